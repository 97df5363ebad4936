"""What the salon's own page shows: the WhatsApp link, the messages (waiting, the log, clients' replies),
the numbers of the last 30 days, and the messaging settings with a preview of every template."""

from __future__ import annotations

from typing import Any

from services.access import tokens
from services.access.salon_sessions import SalonSession
from services.messaging import dispatch, history, preview, settings
from services.platform import clock
from services.whatsapp import gateway, sessions

PAGE = 20
UPCOMING = 20
REPLIES = 10
DAYS = 30


def overview(signed_in: SalonSession, search: str | None = None, before_id: int | None = None) -> dict[str, Any]:
    """The page of the signed-in company; its live token dies with the sign-in it was made for."""
    company_id = signed_in.company_id
    company = sessions.get_company(company_id)
    log = history.list_messages(company_id, search=search, limit=PAGE + 1, before_id=before_id)
    return {
        "company": company,
        "status": sessions.snapshot(company_id),
        "socket_token": tokens.issue_connect_token(company.id, company.salon_id, ttl=max(signed_in.expires_in, 1),
                                                    session=signed_in.digest),
        "simulator": gateway.simulator_active(),
        "qr_limit": sessions.qr_timings()[2],
        "waiting": dispatch.waiting_count(company_id),
        "upcoming": history.upcoming(company_id, UPCOMING),
        "log": log[:PAGE],
        "next_before": log[PAGE - 1]["id"] if len(log) > PAGE else None,
        "search": search or "",
        "replies": history.list_replies(company_id, REPLIES),
        "stats": history.stats(company, DAYS),
        "today": clock.now().astimezone(company.zone).date(),
        "settings": settings.serialise(company),
        "previews": preview.previews(company),
    }
