"""Reacting to booking changes: the mirror's hook calls ``plan_booking_change``, which plans and stores messages.

Connected to ``services.webhooks.changes.booking_changed`` by ``services.messaging.hooks``; the
webhook processor knows nothing of it.
``replan_company`` plans every future booking of a salon again (after its settings change, or from
the CLI): planning is idempotent, so it only adds what is missing and drops what no longer holds.
"""

from __future__ import annotations

import logging
from datetime import datetime

from sqlalchemy import select

from models import Booking, Client, Company, IntegrationStatus, db
from services.messaging import outbox, planner
from services.messaging.settings import rules_for
from services.platform import clock
from services.webhooks.changes import BookingChange, BookingFacts, ChangeKind

log = logging.getLogger(__name__)


def _messages_allowed(company: Company) -> str | None:
    """Why this salon's bookings get no messages, or None when they do."""
    if company.integration_status in IntegrationStatus.CLOSED:
        return f"salon is {company.integration_status}"
    if company.whatsapp_connected_at is None:
        return "salon has never connected WhatsApp"
    return None


def _phone(client_id: int | None) -> str | None:
    if client_id is None:
        return None
    return db.session.scalar(select(Client.phone).where(Client.id == client_id))


def _visit(facts: BookingFacts | None, phone: str | None) -> planner.Visit | None:
    if facts is None:
        return None
    return planner.Visit(starts_at=facts.starts_at, cancelled=facts.cancelled, client_phone=phone)


def _plan(company: Company, booking_id: int, kind: ChangeKind, before: BookingFacts | None, after: BookingFacts,
          version: str, rules: planner.Rules, phone: str | None, now: datetime) -> list[int]:
    after_visit = _visit(after, phone)
    assert after_visit is not None
    result = planner.plan(kind, _visit(before, phone), after_visit, rules, now, version,
                          waiting=outbox.waiting_kinds(booking_id))
    if result.skipped:
        log.info("booking %s of company %s: nothing to send (%s)", booking_id, company.id, result.skipped)
    reason = "booking cancelled" if after.cancelled else "booking changed"
    return outbox.store_plan(company.id, booking_id, phone, result, now, reason)


def plan_booking_change(change: BookingChange) -> list[int]:
    """Plan the messages one committed booking change implies; the new message ids."""
    company = db.session.get(Company, change.company_id)
    if company is None:
        return []
    why_not = _messages_allowed(company)
    if why_not:
        log.info("booking %s of company %s: no messages (%s)", change.booking_id, company.id, why_not)
        return []
    return _plan(company, change.booking_id, change.kind, change.before, change.after, str(change.event_id),
                 rules_for(company), _phone(change.after.client_id), clock.now())


def replan_company(company_id: int) -> int:
    """Plan every future booking of the company again (reminders after a settings change); new messages."""
    company = db.session.get(Company, company_id)
    if company is None or _messages_allowed(company):
        return 0
    now = clock.now()
    # The salon's rules once, and each client's phone with its booking: not two more queries per booking.
    rules = rules_for(company)
    rows = db.session.execute(
        select(Booking, Client.phone).outerjoin(Client, Client.id == Booking.client_id)
        .where(Booking.company_id == company_id, Booking.starts_at > now, Booking.status != "cancelled")
    ).all()
    added = 0
    for row, phone in rows:
        facts = BookingFacts.of(row)
        added += len(_plan(company, row.id, ChangeKind.OTHER, facts, facts, "", rules, phone, now))
    return added
