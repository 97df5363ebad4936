"""Factories for rows the tests need, and fresh reads of them (call inside an app context)."""

from __future__ import annotations

import itertools
import json
from dataclasses import dataclass

from models import Company, IntegrationStatus, WhatsAppSession, db
from services.access import api_keys, tokens, webhook_secrets

_salon_ids = itertools.count(900_001)


@dataclass
class MadeCompany:
    """A committed company with its one-time secrets."""

    id: int
    salon_id: int
    api_key: str
    token: str
    webhook_secret: str
    webhook_url: str


def make_company(
    salon_id: int | None = None, status: str = IntegrationStatus.PENDING, **fields: object
) -> MadeCompany:
    """Insert and commit a company with an API key, a connect token and a webhook secret."""
    company = Company(salon_id=salon_id or next(_salon_ids), integration_status=status, **fields)
    db.session.add(company)
    db.session.flush()
    key = api_keys.issue_key(company.id, label="test")
    db.session.commit()
    # A company made with a revoked secret (uninstalled) has no secret and no URL.
    secret = webhook_secrets.webhook_secret(company) or ""
    url = webhook_secrets.webhook_url(company) or ""
    return MadeCompany(
        id=company.id,
        salon_id=company.salon_id,
        api_key=key,
        token=tokens.issue_connect_token(company.id, company.salon_id),
        webhook_secret=secret,
        webhook_url=url,
    )


def booking_delivery(record_id: int) -> bytes:
    """The body of a reference-shape ``booking_created`` webhook for record ``record_id``."""
    return json.dumps({"type": "booking_created", "created_at": "2024-09-16T10:30:00Z",
                       "data": {"id": record_id, "datetime": "2024-09-17T15:00:00"}}).encode()


def reread_company(company_id: int) -> Company:
    """The company as the database has it now (what other processes wrote included)."""
    db.session.expire_all()
    found = db.session.get(Company, company_id)
    assert found is not None, f"no company {company_id}"
    return found


def reread_session(company_id: int) -> WhatsAppSession:
    """The company's WhatsApp session row as the database has it now."""
    db.session.expire_all()
    return db.session.query(WhatsAppSession).filter_by(company_id=company_id).one()
