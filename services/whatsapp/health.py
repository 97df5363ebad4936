"""The WhatsApp gateway as operators see it in ``/marketplace/health``: which gateway, and salons it refused."""

from __future__ import annotations

from typing import Any

from sqlalchemy import func, select

from models import Company, WhatsAppSession, db
from services.platform import runtime
from services.whatsapp.gateway import SINGLE_SESSION_REASON
from services.whatsapp.sessions import CLOSED, EXPLANATIONS


def gateway_check() -> dict[str, Any]:
    """``{ok, gateway, refused}`` from our own rows (the gateway is not called): not ok while a single-session
    gateway refuses open salons, with the reason and what to do."""
    refused = db.session.scalar(
        select(func.count()).select_from(WhatsAppSession).join(Company, Company.id == WhatsAppSession.company_id)
        .where(WhatsAppSession.failure_reason == SINGLE_SESSION_REASON, Company.integration_status.not_in(CLOSED)))
    check: dict[str, Any] = {"ok": not refused, "gateway": runtime.settings().whatsapp_gateway, "refused": refused}
    if refused:
        check["error"] = f"{refused} salon(s) refused: {EXPLANATIONS[SINGLE_SESSION_REASON]}"
    return check
