"""Rate limits of the reference: public endpoints per client IP, protected ones per API key.

A protected endpoint counts a valid credential (API key, connect token, metrics token) on its own
budget, and everything else — no credential, or one that does not authenticate — on the client
IP's: made-up keys share one budget per address, so keys cannot be guessed without limit. The salon
page's routes count the same way: a live salon session is a credential (its own protected budget, so
salons behind one address do not share one), anything else counts on the public per-IP counter.

Counters live in Redis (Flask-Limiter's storage), so they hold across processes. The client IP is
``request.remote_addr`` after ProxyFix has applied the configured number of trusted proxies, so a
forged ``X-Forwarded-For`` counts only when a trusted proxy put it there. Every limited response
carries ``X-RateLimit-Limit``, ``X-RateLimit-Remaining`` and ``X-RateLimit-Reset``; a 429 adds
``Retry-After`` and the reference's body. Endpoints without a decorator (webhook ingestion) are
never limited: the limiter has no default limits.

When Redis cannot be reached the limits fail open (Flask-Limiter's ``RATELIMIT_SWALLOW_ERRORS``): a
request is let through, and the log says so in one line a minute, not a traceback per request.
"""

from __future__ import annotations

import hashlib
import logging
import math
import threading
import time
from collections.abc import Callable
from typing import Any, TypeVar

from flask import Flask, Response, current_app, jsonify, request
from flask_limiter.errors import RateLimitExceeded
from limits import parse
from redis import RedisError

from services.platform import runtime
from web.auth import presented_valid_credential
from web.extensions import limiter
from web.salon_session import current_session

log = logging.getLogger(__name__)

# Flask-Limiter's own logger: a swallowed storage error is logged there with its traceback, per request.
LIMITER_LOGGER = "flask-limiter"
SWALLOWED_REPORT_SECONDS = 60.0


class SwallowedErrorsInBrief(logging.Filter):
    """Flask-Limiter's "… Swallowing error" records while the storage is away: the first of each
    ``SWALLOWED_REPORT_SECONDS`` kept as a warning without the traceback (with how many came since the
    last one), the rest dropped."""

    def __init__(self, every: float = SWALLOWED_REPORT_SECONDS) -> None:
        super().__init__()
        self._every = every
        self._lock = threading.Lock()
        self._reported_at = -math.inf
        self._since = 0

    def filter(self, record: logging.LogRecord) -> bool:
        if "Swallowing error" not in str(record.msg):
            return True
        with self._lock:
            self._since += 1
            now = time.monotonic()
            if now - self._reported_at < self._every:
                return False
            self._reported_at, since, self._since = now, self._since, 0
        error = record.exc_info[1] if record.exc_info else None
        record.msg = "rate limit storage unreachable, requests let through unlimited (%s since the last report): %s"
        record.args = (since, error)
        record.levelno, record.levelname = logging.WARNING, "WARNING"
        record.exc_info, record.exc_text = None, None
        return True


_brief = SwallowedErrorsInBrief()


def client_ip() -> str:
    """The client address as the trusted proxies report it."""
    return request.remote_addr or "unknown"


def _credential_identity() -> str:
    """A valid credential as a hash; the client IP without one (failed authentications count there)."""
    credential = presented_valid_credential()
    if credential:
        return "key:" + hashlib.sha256(credential.encode()).hexdigest()[:32]
    return "ip:" + client_ip()


View = TypeVar("View", bound=Callable[..., Any])


@limiter.request_filter
def _limits_switched_off() -> bool:
    # One Limiter serves every app of the process; the switch is read from the current app.
    return not runtime.settings().ratelimit_enabled


def unlimited(view: View) -> View:
    """Never rate limited, and skipped by the limiter before it resolves any limit (its per-request
    work is a noticeable share of a webhook acknowledgement)."""
    view.unlimited = True  # type: ignore[attr-defined]
    limiter.exempt(view)
    return view


@limiter.request_filter
def _unlimited_view() -> bool:
    return getattr(current_app.view_functions.get(request.endpoint or ""), "unlimited", False)


PUBLIC_SCOPE = "public"
public_limit = limiter.shared_limit(lambda: runtime.settings().ratelimit_public, scope=PUBLIC_SCOPE, key_func=client_ip)
protected_limit = limiter.shared_limit(
    lambda: runtime.settings().ratelimit_protected, scope="protected", key_func=_credential_identity
)


def _salon_identity() -> str:
    """A live salon session by its cookie's digest; the client IP without one, as ``public_limit`` keys it."""
    session = current_session()
    return "salon:" + session.digest if session else client_ip()


def _salon_budget() -> str:
    settings = runtime.settings()
    return settings.ratelimit_protected if current_session() else settings.ratelimit_public


# Scope "public" too: without a session the counter is the very one of ``public_limit`` (same limit and key).
salon_limit = limiter.shared_limit(_salon_budget, scope=PUBLIC_SCOPE, key_func=_salon_identity)


def _retry_after_if_over(limit: str, *identifiers: str) -> int | None:
    """Count one hit on the counter ``identifiers`` name; the seconds to wait when it is over ``limit``."""
    if not runtime.settings().ratelimit_enabled:
        return None
    item = parse(limit)
    try:
        if limiter.limiter.hit(item, *identifiers):
            return None
        reset_at = limiter.limiter.get_window_stats(item, *identifiers).reset_time
    except RedisError as exc:  # as RATELIMIT_SWALLOW_ERRORS does for HTTP: a Redis outage lets the action through
        log.warning("rate limit storage unreachable, %s let through unlimited: %s", limit, exc)
        return None
    return max(1, math.ceil(reset_at - time.time()))


def public_action_retry_after(ip: str) -> int | None:
    """Count a socket action (authenticate, getQR, getPairingCode) on the counter its HTTP twins share:
    the public per-IP limit, keyed as Flask-Limiter keys ``public_limit``; seconds to wait when over it."""
    return _retry_after_if_over(runtime.settings().ratelimit_public, ip, PUBLIC_SCOPE)


def socket_connection_retry_after(ip: str) -> int | None:
    """Count a new socket (plain or Socket.IO) against the per-IP connection limit; seconds to wait when over it."""
    settings = runtime.settings()
    return _retry_after_if_over(settings.ratelimit_websocket, settings.key("limits", "websocket"), ip)


def _retry_after_only_on_refusals(response: Response) -> Response:
    # Flask-Limiter adds Retry-After to every limited response; it means something only on 429 and 503.
    if response.status_code not in (429, 503):
        response.headers.pop("Retry-After", None)
    return response


def register_rate_limit_handler(app: Flask) -> None:
    """429 in the reference's shape, with ``Retry-After``; no ``Retry-After`` on successful answers; the
    limiter's swallowed storage errors logged in brief."""
    limiter_log = logging.getLogger(LIMITER_LOGGER)
    if _brief not in limiter_log.filters:
        limiter_log.addFilter(_brief)
    # First in the list = run last (Flask runs after-request hooks in reverse), i.e. after the limiter's.
    app.after_request_funcs.setdefault(None, []).insert(0, _retry_after_only_on_refusals)

    @app.errorhandler(RateLimitExceeded)
    def _too_many(exc: RateLimitExceeded) -> tuple[Response, int]:
        current = limiter.current_limit
        # Whole seconds rounded down, the way Flask-Limiter recomputes the header after this handler.
        retry_after = max(1, int(current.reset_at - time.time())) if current else 60
        response = jsonify(success=False, error="Too many requests", retry_after=retry_after)
        response.headers["Retry-After"] = str(retry_after)
        return response, 429
