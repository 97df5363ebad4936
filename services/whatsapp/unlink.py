"""The salon owner unlinks WhatsApp from the salon page."""

from __future__ import annotations

from models import Company, IntegrationStatus, db, utcnow
from services.companies import company_events
from services.platform.errors import Conflict, NotFound
from services.platform.jobs import Job, enqueue

CLOSED_COMPANY = "Приложение отключено в YClients"


def disconnect(company_id: int) -> bool:
    """Disconnect the company now and log its session out on the gateway after commit (the retried
    logout task, which also tells live pages); False when WhatsApp was not linked. Caller commits."""
    company = db.session.get(Company, company_id, with_for_update=True)
    if company is None:
        raise NotFound("Компания не найдена")
    if company.integration_status in IntegrationStatus.CLOSED:
        raise Conflict(CLOSED_COMPANY)
    linked = company.integration_status in IntegrationStatus.LINKED
    if linked:
        company.integration_status = IntegrationStatus.DISCONNECTED
        company.disconnected_at = utcnow()
        company_events.record(company_id, "disconnected", reason="owner")
    enqueue(Job.WHATSAPP_LOGOUT, company_id)
    return linked
