"""Rate limits of the reference: public endpoints per client IP, protected ones per API key.

Counters live in Redis (Flask-Limiter's storage), so they hold across processes. The client IP is
``request.remote_addr`` after ProxyFix has applied the configured number of trusted proxies.
"""

from __future__ import annotations

import hashlib
import math
import time

from flask import Flask, Response, jsonify, request
from flask_limiter.errors import RateLimitExceeded

from services import runtime
from web.auth import presented_api_key
from web.extensions import limiter


def client_ip() -> str:
    """The client address as the trusted proxies report it."""
    return request.remote_addr or "unknown"


def _api_key_identity() -> str:
    key = presented_api_key()
    if key:
        return "key:" + hashlib.sha256(key.encode()).hexdigest()[:32]
    return "ip:" + client_ip()


public_limit = limiter.shared_limit(lambda: runtime.settings().ratelimit_public, scope="public", key_func=client_ip)
protected_limit = limiter.shared_limit(
    lambda: runtime.settings().ratelimit_protected, scope="protected", key_func=_api_key_identity
)


def register_rate_limit_handler(app: Flask) -> None:
    """429 in the reference's shape, with ``Retry-After``."""

    @app.errorhandler(RateLimitExceeded)
    def _too_many(exc: RateLimitExceeded) -> tuple[Response, int]:
        current = limiter.current_limit
        retry_after = max(1, math.ceil(current.reset_at - time.time())) if current else 60
        response = jsonify(success=False, error="Too many requests", retry_after=retry_after)
        response.headers["Retry-After"] = str(retry_after)
        return response, 429
