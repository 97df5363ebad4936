"""Reconciliation: our session rows set right by what the gateway says (events get lost, engines hang).

A beat sweep picks the sessions whose state should have moved on by now — STARTING for longer than a
first QR takes, SCAN_QR_CODE past the attempt's QR budget, WORKING without an event for
``WHATSAPP_QUIET_CHECK_SECONDS`` — and asks the gateway about each one outside any transaction; the
answer is applied with the session policy of ``sessions``. ``flask whatsapp reconcile ID`` does the same
for one company.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import or_, select

from integrations.whatsapp import SessionInfo
from models import SessionStatus, WhatsAppSession, db, utcnow
from services.platform import runtime
from services.whatsapp import sessions
from services.whatsapp.gateway import gateway

SLACK_SECONDS = 30.0
SWEEP_LIMIT = 200


def attempt_budget_seconds() -> float:
    """How long one login attempt may show QR codes (every code's lifetime) before it is over."""
    first, later, count = sessions.qr_timings()
    return first + later * max(0, count - 1) + SLACK_SECONDS


def due(now: datetime | None = None) -> list[int]:
    """Companies whose session the gateway should be asked about now."""
    now = now or utcnow()
    first_ttl = sessions.qr_timings()[0]
    quiet = runtime.settings().whatsapp_quiet_check_seconds
    row = WhatsAppSession

    def older(seconds: float) -> Any:
        return row.updated_at < now - timedelta(seconds=seconds)

    query = select(row.company_id).where(or_(
        (row.status == SessionStatus.STARTING) & older(first_ttl + SLACK_SECONDS),
        (row.status == SessionStatus.SCAN_QR_CODE) & older(attempt_budget_seconds()),
        (row.status == SessionStatus.WORKING) & older(quiet),
    )).order_by(row.updated_at).limit(SWEEP_LIMIT)
    return list(db.session.scalars(query))


def target(company_id: int) -> str | None:
    """The gateway session to ask about (None for a company without one)."""
    found = db.session.scalars(select(WhatsAppSession).where(WhatsAppSession.company_id == company_id)).first()
    return found.gateway_session if found else None


def ask(session: str) -> SessionInfo:
    """The gateway's view of ``session`` (raises GatewayError); call it outside a transaction."""
    return gateway().info(session)


def apply(company_id: int, seen: SessionInfo, now: datetime | None = None) -> str:
    """Repair the company's session row from the gateway's answer; returns what was done."""
    now = now or utcnow()
    company = sessions.get_company(company_id)
    row = sessions.session_for(company_id, lock=True)
    alive = seen.exists and seen.status in sessions.ALIVE
    if company.integration_status in sessions.CLOSED:
        if alive:
            sessions.end_again(company)
            return "ended_again"
        return "closed"
    if row.status in (SessionStatus.STOPPED, SessionStatus.FAILED):
        if alive and row.failure_reason in sessions.ENDED_BY_US:
            row.updated_at = now
            sessions.enqueue_end_attempt(company_id, row.attempt)
            return "ended_again"
        return "settled"
    age = (now - row.updated_at).total_seconds() if row.updated_at else float("inf")
    if seen.status == SessionStatus.WORKING:
        if row.status == SessionStatus.WORKING:
            row.updated_at = now
            return "working"
        return sessions.apply_status(company, row, SessionStatus.WORKING, phone=seen.phone)
    if seen.code is not None:
        return sessions.apply_status(company, row, SessionStatus.FAILED, code=seen.code)
    if seen.status == SessionStatus.FAILED:
        return sessions.apply_status(company, row, SessionStatus.FAILED, reason="failed")
    if not alive:
        if row.status == SessionStatus.WORKING:
            # The gateway lost a linked session (restarted without it?): reconnect it, as after a drop.
            return sessions.apply_status(company, row, SessionStatus.STARTING, code=503)
        return sessions.apply_status(company, row, SessionStatus.FAILED, reason="gateway_lost")
    if row.status == SessionStatus.SCAN_QR_CODE and age > attempt_budget_seconds():
        return sessions.end_attempt_now(company, row, "qr_timeout")
    if row.status == SessionStatus.STARTING and age > sessions.qr_timings()[0] + SLACK_SECONDS:
        if seen.status == SessionStatus.SCAN_QR_CODE:
            return sessions.apply_status(company, row, SessionStatus.SCAN_QR_CODE)
        return sessions.end_attempt_now(company, row, "start_timeout")
    return "in_progress"
