"""A salon's own details from YClients (title, address, time zone), fetched once it is activated.

Reminders are computed in the salon's time zone, so ``timezone_name`` matters most; until YClients
has told us, the company keeps its default (Europe/Moscow). A value YClients sends that is not a
known IANA zone is logged and ignored.
"""

from __future__ import annotations

import logging
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from integrations.yclients import Outcome, YClientsPartnerClient
from models import Company, db
from services.platform import runtime
from services.platform.text import single_line

log = logging.getLogger(__name__)


def _known_zone(name: str | None) -> str | None:
    if not name:
        return None
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return None
    return name


def refresh(company_id: int) -> bool | None:
    """Ask YClients for the salon's details and keep them; True when stored, False when YClients had
    none, None when it could not be asked now (the task retries)."""
    company = db.session.get(Company, company_id)
    settings = runtime.settings()
    if company is None or not settings.yclients_partner_token:
        return False
    salon_id = company.salon_id
    db.session.rollback()  # no transaction is held across the call
    client = YClientsPartnerClient(settings.yclients_api_url, settings.yclients_partner_token,
                                   settings.yclients_timeout_seconds)
    info = client.company(salon_id)
    if info.response.outcome is Outcome.RETRY:
        return None
    company = db.session.get(Company, company_id)
    if company is None or info.response.outcome is not Outcome.ACCEPTED:
        log.warning("company %s: YClients gave no details (%s)", company_id, info.response.message)
        return False
    zone = _known_zone(info.timezone_name)
    if info.timezone_name and zone is None:
        log.warning("company %s: YClients sent an unknown time zone %r; keeping %s", company_id,
                    info.timezone_name[:64], company.timezone)
    company.title = single_line(info.title, 255) or company.title
    company.address = single_line(info.address, 255) or company.address
    company.timezone = zone or company.timezone
    db.session.commit()
    return True
