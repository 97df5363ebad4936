"""Connect tokens: JWT HS256 with ``company_id``, ``salon_id``, ``type``, ``iat`` and ``exp``."""

from __future__ import annotations

import time
from typing import Any

import jwt

from services.platform import runtime
from services.platform.errors import Unauthorized

CONNECT = "connect"
INVALID_TOKEN = "Недействительный токен"


def issue_connect_token(company_id: int, salon_id: int, ttl: int | None = None) -> str:
    """A token that lets its holder connect (and watch) this company's WhatsApp."""
    settings = runtime.settings()
    now = int(time.time())
    claims = {
        "company_id": company_id,
        "salon_id": salon_id,
        "type": CONNECT,
        "iat": now,
        "exp": now + (ttl if ttl is not None else settings.jwt_ttl_seconds),
    }
    return jwt.encode(claims, settings.secret_key, algorithm="HS256")


def verify_connect_token(token: str | None, token_type: str = CONNECT) -> dict[str, Any]:
    """The claims of a valid token; ``Unauthorized("Недействительный токен")`` for anything else.

    Only HS256 is accepted (no ``alg: none``, no key confusion), ``exp`` is required, and the
    ``type`` claim must match.
    """
    if not token:
        raise Unauthorized(INVALID_TOKEN)
    try:
        claims = jwt.decode(
            token,
            runtime.settings().secret_key,
            algorithms=["HS256"],
            options={"require": ["exp", "iat", "company_id", "type"]},
        )
    except jwt.PyJWTError:
        raise Unauthorized(INVALID_TOKEN) from None
    if claims.get("type") != token_type or not isinstance(claims.get("company_id"), int):
        raise Unauthorized(INVALID_TOKEN)
    return claims
