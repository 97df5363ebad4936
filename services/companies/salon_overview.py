"""What the salon's own page shows: the WhatsApp link and the token its live panel authenticates with."""

from __future__ import annotations

from typing import Any

from services.access import tokens
from services.whatsapp import gateway, sessions


def overview(company_id: int, session_seconds: int) -> dict[str, Any]:
    """The page's data; the live token lives no longer than the sign-in it was made for."""
    company = sessions.get_company(company_id)
    return {
        "company": company,
        "status": sessions.snapshot(company_id),
        "socket_token": tokens.issue_connect_token(company.id, company.salon_id, ttl=max(session_seconds, 1)),
        "simulator": gateway.simulator_active(),
        "qr_limit": sessions.qr_timings()[2],
    }
