"""API keys: ``sk_`` + 43 url-safe random characters, shown once, kept only as SHA-256."""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass

from sqlalchemy import select, update

from models import ApiKey, db, utcnow
from services.platform import runtime

PREFIX_LENGTH = 10


def hash_key(plaintext: str) -> str:
    """The stored form of a key (keys carry 256 random bits, so a fast hash is enough)."""
    return hashlib.sha256(plaintext.encode()).hexdigest()


def generate_key() -> str:
    """A new plaintext key."""
    return "sk_" + secrets.token_urlsafe(32)


def issue_key(company_id: int | None, label: str = "default") -> str:
    """Store a new key for ``company_id`` (None = admin) and return its plaintext, once."""
    plaintext = generate_key()
    db.session.add(
        ApiKey(company_id=company_id, prefix=plaintext[:PREFIX_LENGTH], key_hash=hash_key(plaintext), label=label)
    )
    db.session.flush()
    return plaintext


@dataclass(frozen=True)
class Principal:
    """Who a request acts as: an admin, or one company."""

    company_id: int | None
    key_id: int | None = None

    @property
    def is_admin(self) -> bool:
        return self.company_id is None

    def may_act_for(self, company_id: int) -> bool:
        """Admins act for everyone; a company key only for its own company."""
        return self.is_admin or self.company_id == company_id


def authenticate(plaintext: str | None) -> Principal | None:
    """The principal a presented key belongs to, or None for a missing, unknown or revoked key."""
    if not plaintext or not plaintext.startswith("sk_"):
        return None
    configured = runtime.settings().admin_api_key
    if configured and hmac.compare_digest(plaintext.encode(), configured.encode()):
        return Principal(company_id=None)
    # Lookup by the hash of the presented key: timing reveals nothing about stored keys.
    key = db.session.scalar(select(ApiKey).where(ApiKey.key_hash == hash_key(plaintext)))
    if key is None or key.revoked_at is not None:
        return None
    return Principal(company_id=key.company_id, key_id=key.id)


def revoke_keys(company_id: int | None, label: str | None = None) -> int:
    """Revoke the company's (or the admin) keys, optionally only those with ``label``; returns how many."""
    query = update(ApiKey).where(ApiKey.revoked_at.is_(None))
    query = query.where(ApiKey.company_id.is_(None) if company_id is None else ApiKey.company_id == company_id)
    if label is not None:
        query = query.where(ApiKey.label == label)
    result = db.session.execute(query.values(revoked_at=utcnow()))
    return int(result.rowcount or 0)  # type: ignore[attr-defined]
