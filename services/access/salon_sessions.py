"""Salon sessions: the salon page's sign-in, made once from a connect token or a signed install redirect.

The browser holds only a random id (an HttpOnly cookie). Redis keeps the company and the session's CSRF
token under the SHA-256 of that id for ``SALON_SESSION_TTL_SECONDS`` from sign-in (not renewed by use), so a
sign-out ends the session in every process and a copy of Redis holds no usable cookie. A session belongs to
one company; an uninstalled company's sessions stop working at once.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
from dataclasses import dataclass

from models import Company, IntegrationStatus, db
from services.platform import runtime
from services.platform.errors import Forbidden

COOKIE = "salon_session"
CSRF_FIELD = "csrf_token"
CSRF_HEADER = "X-CSRF-Token"
BAD_CSRF = "Страница устарела: обновите её и повторите действие"
_ID_BYTES = 32


@dataclass(frozen=True)
class SalonSession:
    """A live sign-in: whose page it opens, the token every change must carry, seconds left, and the
    digest of its cookie (what the page's live token names it by)."""

    company_id: int
    csrf_token: str
    expires_in: int
    digest: str


def _digest(session_id: str) -> str:
    return hashlib.sha256(session_id.encode()).hexdigest()


def _key(session_id: str) -> str:
    return _digest_key(_digest(session_id))


def _digest_key(digest: str) -> str:
    return runtime.settings().key("salon_session", digest)


def open_session(company_id: int) -> tuple[str, SalonSession]:
    """A new session for the company: the cookie value (shown once) and the session."""
    session_id = secrets.token_urlsafe(_ID_BYTES)
    csrf = secrets.token_urlsafe(_ID_BYTES)
    ttl = runtime.settings().salon_session_ttl_seconds
    runtime.redis().set(_key(session_id), json.dumps({"company_id": company_id, "csrf": csrf}), ex=ttl)
    return session_id, SalonSession(company_id, csrf, ttl, _digest(session_id))


def find_session(session_id: str | None) -> SalonSession | None:
    """The live session of a cookie value; None for none, an expired, ended or forged one, or a company
    that is gone or uninstalled."""
    if not session_id or len(session_id) > 128:
        return None
    key = _key(session_id)
    pipe = runtime.redis().pipeline()
    pipe.get(key)
    pipe.ttl(key)
    raw, ttl = pipe.execute()
    if raw is None:
        return None
    stored = json.loads(raw)
    company = db.session.get(Company, int(stored["company_id"]))
    if company is None or company.integration_status == IntegrationStatus.UNINSTALLED:
        runtime.redis().delete(key)
        return None
    return SalonSession(company.id, str(stored["csrf"]), max(int(ttl), 0), _digest(session_id))


def is_live(digest: object) -> bool:
    """Whether the session of this cookie digest is still signed in (a token bound to it dies with it)."""
    return isinstance(digest, str) and len(digest) == 64 and bool(runtime.redis().exists(_digest_key(digest)))


def end_session(session_id: str | None) -> None:
    """Sign out: the cookie stops working everywhere (nothing happens for an unknown one)."""
    if session_id and len(session_id) <= 128:
        runtime.redis().delete(_key(session_id))


def check_csrf(session: SalonSession, presented: str | None) -> None:
    """``Forbidden`` unless ``presented`` is this session's CSRF token (compared in constant time)."""
    if not presented or not hmac.compare_digest(presented.encode(), session.csrf_token.encode()):
        raise Forbidden(BAD_CSRF)
