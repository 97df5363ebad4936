"""What an operator needs to see about one company: status, session, recent activity (no secrets)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select

from models import ApiKey, Callback, CompanyEvent, WebhookEvent, WhatsAppSession, db
from services.access import webhook_secrets
from services.companies.queries import get_company
from services.platform import outages
from services.platform.dates import iso
from services.platform.logs import Redactor
from services.whatsapp.sessions import EXPLANATIONS

_redact = Redactor()


def _text(value: str | None, limit: int = 160) -> str | None:
    """Free text (errors, excerpts) shortened and with phones and keys masked."""
    return _redact(value[:limit]) if value else None


def company_overview(company_id: int, limit: int = 10) -> dict[str, Any]:
    """Status, WhatsApp session, keys (prefixes only) and the latest events, callbacks and webhooks."""
    company = get_company(company_id)
    session = db.session.scalar(select(WhatsAppSession).where(WhatsAppSession.company_id == company_id))
    events = db.session.scalars(
        select(CompanyEvent).where(CompanyEvent.company_id == company_id).order_by(CompanyEvent.id.desc()).limit(limit)
    )
    callbacks = db.session.scalars(
        select(Callback).where(Callback.company_id == company_id).order_by(Callback.id.desc()).limit(limit)
    )
    webhooks = db.session.scalars(
        select(WebhookEvent).where(WebhookEvent.company_id == company_id).order_by(WebhookEvent.id.desc()).limit(limit)
    )
    keys = db.session.scalars(select(ApiKey).where(ApiKey.company_id == company_id).order_by(ApiKey.id.desc()))
    return {
        "company": {
            "id": company.id,
            "salon_id": company.salon_id,
            "title": company.title,
            "integration_status": company.integration_status,
            "whatsapp_phone": _text(company.whatsapp_phone),
            "registered_at": iso(company.registered_at),
            "whatsapp_connected_at": iso(company.whatsapp_connected_at),
            "activated_at": iso(company.activated_at),
            "disconnected_at": iso(company.disconnected_at),
            "webhook_secret_active": not webhook_secrets.is_revoked(company),
        },
        "whatsapp_session": None if session is None else {
            "status": session.status,
            "gateway_session": session.gateway_session,
            "attempt": session.attempt,
            "qr_count": session.qr_count,
            "failure_reason": session.failure_reason,
            "explanation": EXPLANATIONS.get(session.failure_reason or ""),
            "last_disconnect_code": session.last_disconnect_code,
            "reconnect_attempts": session.reconnect_attempts,
            "updated_at": iso(session.updated_at),
        },
        "outages": outages.current(),
        "api_keys": [
            {"prefix": k.prefix, "label": k.label, "created_at": iso(k.created_at), "revoked_at": iso(k.revoked_at)}
            for k in keys
        ],
        "events": [{"id": e.id, "kind": e.kind, "created_at": iso(e.created_at)} for e in events],
        "callbacks": [
            {
                "id": c.id, "status": c.status, "attempts": c.attempts, "http_status": c.http_status,
                "error": _text(c.error), "created_at": iso(c.created_at), "sent_at": iso(c.sent_at),
            }
            for c in callbacks
        ],
        "webhook_events": [
            {
                "id": w.id, "source": w.source, "type": w.type, "status": w.status, "attempts": w.attempts,
                "last_error": _text(w.last_error or w.reject_reason), "received_at": iso(w.received_at),
            }
            for w in webhooks
        ],
    }
