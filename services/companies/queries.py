"""A company's connection status, who may read it, and the connection stats of all companies."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import func, select

from models import Company, CompanyEvent, IntegrationStatus, WhatsAppSession, db, utcnow
from services.access import api_keys, tokens
from services.messaging.dispatch import waiting_count
from services.platform import outages
from services.platform.dates import iso
from services.platform.errors import Forbidden, InvalidInput, NotFound, Unauthorized
from services.platform.ids import MAX_BIG_ID, parse_id

NOT_FOUND = "Компания не найдена"

# How DESIGN.md §5 statuses fold into the reference's three buckets (documented in the OpenAPI).
CONNECTED_STATUSES = (IntegrationStatus.CONNECTED, IntegrationStatus.ACTIVE)
PENDING_STATUSES = (IntegrationStatus.PENDING, IntegrationStatus.CONNECTING, IntegrationStatus.ACTIVATION_FAILED)
DISCONNECTED_STATUSES = (IntegrationStatus.DISCONNECTED, IntegrationStatus.FROZEN, IntegrationStatus.UNINSTALLED)
CONNECTION_EVENTS = ("connected",)
DISCONNECTION_EVENTS = ("disconnected", "uninstalled")



def get_company(company_id: int) -> Company:
    """The company, or ``NotFound("Компания не найдена")``."""
    company = db.session.get(Company, company_id)
    if company is None:
        raise NotFound(NOT_FOUND)
    return company


def authorize_company_read(company_id: int, api_key: str | None, token: str | None) -> None:
    """Allow the admin key, the company's own key, or its connect token; raise otherwise.

    401 without valid credentials, 403 for another company's credentials. A missing company is
    reported by the caller afterwards, so only those allowed to ask learn whether it exists.
    """
    if api_key:
        principal = api_keys.authenticate(api_key)
        if principal is None:
            raise Unauthorized("Unauthorized")
        if not principal.may_act_for(company_id):
            raise Forbidden("Нет доступа к этой компании")
        return
    if token:
        claims = tokens.verify_connect_token(token)
        if claims["company_id"] != company_id:
            raise Forbidden("Нет доступа к этой компании")
        return
    raise Unauthorized("Unauthorized")



def company_for_principal(company_id: Any, salon_id: Any, principal: api_keys.Principal) -> int:
    """The company a request names by ``company_id`` or ``salon_id`` (a company key: its own by default).

    403 when a company key names another company, 404 only for the admin (or the company itself).
    """
    wanted = parse_id(company_id, "company_id")
    salon = parse_id(salon_id, "salon_id", MAX_BIG_ID)
    if wanted is None and salon is None:
        if principal.is_admin:
            raise InvalidInput("Отсутствует обязательный параметр company_id или salon_id")
        wanted = principal.company_id
    if salon is not None:
        by_salon = db.session.scalar(select(Company.id).where(Company.salon_id == salon))
        if wanted is not None and by_salon is not None and by_salon != wanted:
            raise InvalidInput("company_id и salon_id указывают на разные компании")
        wanted = wanted or by_salon
    if wanted is None:
        if not principal.is_admin:
            raise Forbidden("Нет доступа к этой компании")
        raise NotFound(NOT_FOUND)
    if not principal.may_act_for(wanted):
        raise Forbidden("Нет доступа к этой компании")
    return get_company(wanted).id


def status_payload(company: Company) -> dict[str, Any]:
    """The reference's status fields, plus the session state, activation time, messages waiting to go and the
    outages of the services the salon depends on (the WhatsApp gateway, YClients)."""
    session = db.session.scalar(select(WhatsAppSession).where(WhatsAppSession.company_id == company.id))
    return {
        "company_id": company.id,
        "whatsapp_connected": company.whatsapp_connected,
        "whatsapp_phone": company.whatsapp_phone,
        "integration_status": company.integration_status,
        "connected_at": iso(company.whatsapp_connected_at),
        "salon_id": company.salon_id,
        "session_status": session.status if session else None,
        "activated_at": iso(company.activated_at),
        "registered_at": iso(company.registered_at),
        "messages_waiting": waiting_count(company.id),
        "outages": outages.current(),
    }


def company_status(company_id: int, api_key: str | None, token: str | None) -> dict[str, Any]:
    """``GET /status/:companyId`` for a caller presenting ``api_key`` or ``token``."""
    authorize_company_read(company_id, api_key, token)
    return status_payload(get_company(company_id))


def _companies_with_events(kinds: tuple[str, ...], since: datetime) -> int:
    query = select(func.count(func.distinct(CompanyEvent.company_id))).where(
        CompanyEvent.kind.in_(kinds), CompanyEvent.created_at >= since
    )
    return int(db.session.scalar(query) or 0)


def connection_stats(now: datetime | None = None) -> dict[str, Any]:
    """The reference's ``stats`` object, with every raw status under ``by_integration_status``."""
    rows = db.session.execute(
        select(Company.integration_status, func.count()).group_by(Company.integration_status)
    ).all()
    raw = {status: 0 for status in IntegrationStatus.ALL}
    for status, count in rows:
        raw[status] = raw.get(status, 0) + int(count)

    connected = sum(raw[s] for s in CONNECTED_STATUSES)
    pending = sum(raw[s] for s in PENDING_STATUSES)
    disconnected = sum(raw[s] for s in DISCONNECTED_STATUSES)
    since = (now or utcnow()) - timedelta(hours=24)
    return {
        "total": sum(raw.values()),
        "connected": connected,
        "pending": pending,
        "disconnected": disconnected,
        "by_status": {"active": connected, "pending": pending, "inactive": disconnected},
        "last_24h": {
            "new_connections": _companies_with_events(CONNECTION_EVENTS, since),
            "disconnections": _companies_with_events(DISCONNECTION_EVENTS, since),
            "registrations": _companies_with_events(("registered",), since),
            "activations": _companies_with_events(("activated",), since),
        },
        "by_integration_status": raw,
    }
