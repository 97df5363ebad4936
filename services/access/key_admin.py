"""Operator key management: create, rotate, revoke and list API keys (admin and company keys)."""

from __future__ import annotations

from sqlalchemy import select

from models import ApiKey, db, utcnow
from services.access import api_keys
from services.companies import company_events
from services.companies.queries import get_company
from services.platform.errors import InvalidInput

DEFAULT_LABEL = "default"
MIN_PREFIX = 7  # "sk_" and four characters: shorter would match too many keys


def create_key(company_id: int | None, label: str = DEFAULT_LABEL) -> tuple[ApiKey, str]:
    """A new key for the company (None = an admin key) next to its existing ones; caller commits."""
    if company_id is not None:
        get_company(company_id)
    plaintext = api_keys.issue_key(company_id, label=label)
    key = db.session.scalar(select(ApiKey).where(ApiKey.key_hash == api_keys.hash_key(plaintext)))
    assert key is not None
    if company_id is not None:
        company_events.record(company_id, "key_created", label=label, prefix=key.prefix)
    return key, plaintext


def rotate_company_key(company_id: int, label: str = DEFAULT_LABEL) -> tuple[int, ApiKey, str]:
    """Revoke the company's active keys with ``label`` and issue one new key; returns (revoked, key, plaintext)."""
    get_company(company_id)
    revoked = api_keys.revoke_keys(company_id, label=label)
    plaintext = api_keys.issue_key(company_id, label=label)
    key = db.session.scalar(select(ApiKey).where(ApiKey.key_hash == api_keys.hash_key(plaintext)))
    assert key is not None
    company_events.record(company_id, "key_rotated", label=label, prefix=key.prefix, revoked=revoked)
    return revoked, key, plaintext


def revoke_keys(company_id: int | None = None, prefix: str | None = None) -> list[ApiKey]:
    """Revoke every active key of a company, or the keys starting with ``prefix``; returns them."""
    if (company_id is None) == (prefix is None):
        raise InvalidInput("give either a company id or a key prefix")
    query = select(ApiKey).where(ApiKey.revoked_at.is_(None))
    if company_id is not None:
        get_company(company_id)
        query = query.where(ApiKey.company_id == company_id)
    else:
        assert prefix is not None
        if len(prefix) < MIN_PREFIX or not prefix.startswith("sk_"):
            raise InvalidInput(f"a key prefix starts with sk_ and has at least {MIN_PREFIX} characters")
        stored = prefix[: api_keys.PREFIX_LENGTH]
        query = query.where(ApiKey.prefix.startswith(stored, autoescape=True))
        if len(prefix) > api_keys.PREFIX_LENGTH:  # a whole key (or more than the stored prefix) was given
            query = query.where(ApiKey.key_hash == api_keys.hash_key(prefix))
    keys = list(db.session.scalars(query.order_by(ApiKey.id)))
    now = utcnow()
    for key in keys:
        key.revoked_at = now
        if key.company_id is not None:
            company_events.record(key.company_id, "key_revoked", label=key.label, prefix=key.prefix)
    db.session.flush()
    return keys


def list_keys(company_id: int | None = None, admin_only: bool = False) -> list[ApiKey]:
    """Keys (revoked ones too), newest first: all, one company's, or only admin keys."""
    query = select(ApiKey).order_by(ApiKey.id.desc())
    if company_id is not None:
        get_company(company_id)
        query = query.where(ApiKey.company_id == company_id)
    elif admin_only:
        query = query.where(ApiKey.company_id.is_(None))
    return list(db.session.scalars(query))
