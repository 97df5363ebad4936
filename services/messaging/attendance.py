"""Writing a client's answer back to YClients: attendance 2 (confirmed) or −1 (will not come).

Run by a retried task. The reply itself is already stored: a YClients that refuses or cannot be
reached only delays the write, and a write that keeps failing is reported (the reply's
``yclients_write`` becomes ``failed``, a company event is recorded, the log says why) — never lost.
A pending write keeps when its next attempt is due (``write_after``); one whose task message was lost
(a worker killed as it took it) is sent again by the messaging tick once that is a lease past.
"""

from __future__ import annotations

import logging
from datetime import timedelta

from sqlalchemy import or_, select

from integrations.yclients import Outcome, YClientsPartnerClient
from models import Booking, Company, InboundMessage, ReplyWrite, db, utcnow
from services.companies import company_events
from services.messaging.replies import Meaning
from services.platform import runtime
from services.platform.backoff import backoff
from services.platform.ids import as_id
from services.platform.jobs import Job, enqueue

log = logging.getLogger(__name__)

CONFIRMED, WILL_NOT_COME = 2, -1
COMMENT = {CONFIRMED: "Клиент подтвердил запись ответом в WhatsApp",
           WILL_NOT_COME: "Клиент ответил в WhatsApp, что не придёт"}


def request_write(row: InboundMessage) -> None:
    """Write the pending answer of ``row`` (flushed) to YClients once the transaction commits."""
    row.write_after = utcnow()
    enqueue(Job.MESSAGING_WRITE_ATTENDANCE, row.id)


def resend_lost() -> int:
    """Send again the pending writes whose attempt is a lease overdue: their task was lost. How many."""
    cutoff = utcnow() - timedelta(seconds=runtime.settings().messaging_sending_lease_seconds)
    rows = db.session.scalars(select(InboundMessage).where(
        InboundMessage.yclients_write == ReplyWrite.PENDING,
        or_(InboundMessage.write_after.is_(None), InboundMessage.write_after <= cutoff))
        .with_for_update(skip_locked=True)).all()
    for row in rows:
        log.warning("company %s: the attendance write of reply %s is sent again (its task was lost)",
                    row.company_id, row.id)
        request_write(row)
    return len(rows)


def _give_up(row: InboundMessage, error: str) -> None:
    row.yclients_write, row.error, row.write_after = ReplyWrite.FAILED, error[:1000], None
    company_events.record(row.company_id, "attendance_write_failed", inbound_id=row.id, booking_id=row.booking_id,
                          error=error[:300])
    log.error("company %s: attendance for reply %s not written to YClients: %s", row.company_id, row.id, error)


def write(inbound_id: int) -> float | None:
    """One attempt; the delay before the next one, or None when done (written, or given up and reported)."""
    row = db.session.get(InboundMessage, inbound_id, with_for_update=True)
    if row is None or row.yclients_write != ReplyWrite.PENDING:
        db.session.rollback()
        return None
    booking = db.session.get(Booking, row.booking_id) if row.booking_id else None
    company = db.session.get(Company, row.company_id)
    settings = runtime.settings()
    attendance = CONFIRMED if row.meaning == Meaning.CONFIRM.value else WILL_NOT_COME
    visit_id = as_id((booking.data or {}).get("visit_id"), 2**63 - 1) if booking else None
    if booking is None or company is None or visit_id is None:
        _give_up(row, "the booking has no YClients visit id to write to")
        db.session.commit()
        return None
    if not (settings.yclients_partner_token and settings.yclients_application_id):
        _give_up(row, "YCLIENTS_PARTNER_TOKEN is not set")
        db.session.commit()
        return None
    row.write_attempts += 1
    row.write_after = utcnow() + timedelta(seconds=settings.yclients_timeout_seconds)  # the call's end at the latest
    record_id, attempt = booking.record_id, row.write_attempts
    db.session.commit()  # no transaction is held across the call
    client = YClientsPartnerClient(settings.yclients_api_url, settings.yclients_partner_token,
                                   settings.yclients_timeout_seconds)
    response = client.set_attendance(record_id, visit_id, attendance, COMMENT[attendance])
    row = db.session.get(InboundMessage, inbound_id)
    assert row is not None
    if response.outcome is Outcome.ACCEPTED:
        row.yclients_write, row.error, row.write_after = ReplyWrite.DONE, None, None
        booking = db.session.get(Booking, row.booking_id) if row.booking_id else None
        if booking is not None:
            booking.attendance = attendance
        db.session.commit()
        return None
    error = f"HTTP {response.http_status}: {response.message}"
    if attempt >= settings.messaging_max_attempts:
        _give_up(row, error)
        db.session.commit()
        return None
    delay = backoff(attempt, settings.callback_retry_base_seconds, settings.callback_retry_max_seconds)
    row.error, row.write_after = error[:1000], utcnow() + timedelta(seconds=delay)
    db.session.commit()
    return delay
