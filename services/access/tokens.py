"""Connect tokens: JWT HS256 with ``company_id``, ``salon_id``, ``type``, ``iat`` and ``exp``.

The salon page's live panel gets a token bound to its sign-in (``sid``, the session cookie's digest): it
stops working the moment that session ends (sign-out, uninstall), and it cannot sign in anew."""

from __future__ import annotations

import time
from typing import Any

import jwt

from services.access import salon_sessions
from services.platform import runtime
from services.platform.errors import Unauthorized

CONNECT = "connect"
INVALID_TOKEN = "Недействительный токен"
SESSION_CLAIM = "sid"


def issue_connect_token(company_id: int, salon_id: int, ttl: int | None = None, session: str | None = None) -> str:
    """A token that lets its holder connect (and watch) this company's WhatsApp; with ``session`` (a salon
    session's digest) only while that session lives."""
    settings = runtime.settings()
    now = int(time.time())
    claims: dict[str, Any] = {
        "company_id": company_id,
        "salon_id": salon_id,
        "type": CONNECT,
        "iat": now,
        "exp": now + (ttl if ttl is not None else settings.jwt_ttl_seconds),
    }
    if session is not None:
        claims[SESSION_CLAIM] = session
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
    if SESSION_CLAIM in claims and not salon_sessions.is_live(claims[SESSION_CLAIM]):
        raise Unauthorized(INVALID_TOKEN)  # its salon page was signed out
    return claims
