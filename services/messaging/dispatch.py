"""Delivering due messages: the only code that sends a message through a gateway.

``claim_due`` (the beat tick) moves due messages to ``queued`` with one indexed query per batch
(``FOR UPDATE SKIP LOCKED`` on PostgreSQL) and names the salons that have work; ``send_next`` (one
task per salon at a time, under a Redis lock) sends that salon's next queued message when its
number's pacer allows — booking messages and replies before reminders — and says when to come back.

Sending is three commits apart: ``sending`` (typing shown) by the dispatcher, ``handed_at`` by
``deliver`` just before the gateway is asked, ``sent`` with the gateway's message id after. A lost
deliver task leaves ``sending`` without ``handed_at``, which the tick puts back in the queue; a
worker killed after handing (or a gateway that timed out after the request went out) leaves it
handed, which the tick fails as "outcome unknown" after a lease instead of sending it a second time.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from redis.exceptions import LockError
from sqlalchemy import and_, func, select, update

from integrations.whatsapp import GatewayError
from integrations.whatsapp.base import message_key
from models import (
    Booking,
    Client,
    Company,
    IntegrationStatus,
    Message,
    MessageState,
    MessagingSettings,
    OptOut,
    WhatsAppSession,
    db,
    utcnow,
)
from services.messaging import numbers, pacing
from services.messaging.outbox import REMINDER_KINDS
from services.messaging.settings import settings_row
from services.messaging.templates import Context, Kind, render
from services.phones import whatsapp_digits
from services.platform import clock, outages, runtime
from services.platform.jobs import Job, enqueue
from services.platform.metrics import MESSAGES, PACING_WAITS
from services.whatsapp.gateway import gateway
from services.whatsapp.sessions import session_for

log = logging.getLogger(__name__)

BATCH = 500
CONFIRMATION_KINDS = (Kind.CONFIRMATION_REQUEST, Kind.CONFIRMATION_REASK)
CONFIRMED = 2


@dataclass(frozen=True)
class Outcome:
    """What one ``send_next`` did, and when the salon's dispatcher should run again (None: no more work)."""

    sent: int | None = None
    again_in: float | None = None


def _linked_companies() -> list[str]:
    return list(IntegrationStatus.LINKED)


def expire_and_recover(now: datetime) -> int:
    """Waiting messages past their deadline expire; sends whose worker died are recovered or failed.

    A ``sending`` message whose text never reached the gateway (the deliver task was lost) goes back
    to the queue; one handed to the gateway without an answer fails as "outcome unknown" — it may
    have been sent, so it is never sent again. The lease runs on real time, not the scheduling clock.
    """
    expired = db.session.execute(
        update(Message).where(Message.state.in_(MessageState.WAITING), Message.due_at <= now,
                              Message.expires_at <= now)
        .values(state=MessageState.EXPIRED, reason="deadline passed before it could be sent", updated_at=now)
    ).rowcount or 0  # type: ignore[attr-defined]
    cutoff = utcnow() - timedelta(seconds=runtime.settings().messaging_sending_lease_seconds)
    lost = db.session.execute(
        update(Message).where(Message.state == MessageState.SENDING, Message.sending_at <= cutoff,
                              Message.handed_at.is_(None))
        .values(state=MessageState.QUEUED, sending_at=None, updated_at=now)
    ).rowcount or 0  # type: ignore[attr-defined]
    unknown = db.session.execute(
        update(Message).where(Message.state == MessageState.SENDING, Message.sending_at <= cutoff,
                              Message.handed_at.is_not(None))
        .values(state=MessageState.FAILED, reason="outcome unknown: the send was interrupted; not sent again",
                updated_at=now)
    ).rowcount or 0  # type: ignore[attr-defined]
    for outcome, count in ((MessageState.EXPIRED, expired), (MessageState.FAILED, unknown)):
        if count:
            MESSAGES.labels(kind="any", outcome=outcome).inc(count)
    return int(expired + lost + unknown)


def claim_due(now: datetime, limit: int = BATCH) -> list[int]:
    """Move due messages of linked salons to ``queued``; the salons that have queued work."""
    due = (
        select(Message.id).join(Company, Company.id == Message.company_id)
        .where(Message.state == MessageState.PLANNED, Message.due_at <= now, Message.expires_at > now,
               Company.integration_status.in_(_linked_companies()))
        .order_by(Message.priority, Message.due_at).limit(limit)
    )
    if db.session.get_bind().dialect.name == "postgresql":
        due = due.with_for_update(of=Message, skip_locked=True)
    ids = list(db.session.scalars(due))
    if ids:
        db.session.execute(update(Message).where(Message.id.in_(ids)).values(state=MessageState.QUEUED, updated_at=now))
    companies = db.session.scalars(
        select(Message.company_id).join(Company, Company.id == Message.company_id)
        .where(Message.state == MessageState.QUEUED, Company.integration_status.in_(_linked_companies()))
        .distinct()
    )
    return list(companies)


@dataclass(frozen=True)
class _Queued:
    """A salon's next queued message with what deciding and rendering it reads."""

    message: Message
    booking: Booking | None
    client: Client | None
    opted_out: bool


def _next_queued(company_id: int) -> _Queued | None:
    """The salon's next queued message (row-locked; one another run holds is skipped), with its booking, the
    booking's client and whether the phone opted out, in one query."""
    query = (select(Message, Booking, Client, OptOut.phone)
             .outerjoin(Booking, Booking.id == Message.booking_id)
             .outerjoin(Client, Client.id == Booking.client_id)
             .outerjoin(OptOut, and_(OptOut.company_id == Message.company_id, OptOut.phone == Message.phone))
             .where(Message.company_id == company_id, Message.state == MessageState.QUEUED)
             .order_by(Message.priority, Message.due_at, Message.id).limit(1))
    if db.session.get_bind().dialect.name == "postgresql":
        query = query.with_for_update(of=Message, skip_locked=True)
    row = db.session.execute(query).first()
    return None if row is None else _Queued(row[0], row[1], row[2], row[3] is not None)


def _salon(company_id: int) -> tuple[Company, str | None, MessagingSettings | None] | None:
    """The salon, its gateway session and its stored messaging settings, in one query."""
    row = db.session.execute(
        select(Company, WhatsAppSession.gateway_session, MessagingSettings)
        .outerjoin(WhatsAppSession, WhatsAppSession.company_id == Company.id)
        .outerjoin(MessagingSettings, MessagingSettings.company_id == Company.id)
        .where(Company.id == company_id)
    ).first()
    return None if row is None else (row[0], row[1], row[2])


def _still_wanted(queued: _Queued, now: datetime) -> str | None:
    """Why a queued message should not go any more, or None."""
    message, booking = queued.message, queued.booking
    if message.expires_at <= now:
        return "deadline passed before it could be sent"
    if queued.opted_out and message.kind != Kind.OPT_OUT_ACK:
        return "client opted out (СТОП)"
    if booking is None:
        return None if message.booking_id is None else "booking deleted"
    if message.kind in [k.value for k in REMINDER_KINDS]:
        if booking.status == "cancelled" or booking.attendance == -1:
            return "booking cancelled"
        if booking.starts_at is None or not message.slot.endswith(booking.starts_at.isoformat()):
            return "booking moved"
    if message.kind in [k.value for k in CONFIRMATION_KINDS] and booking.attendance == CONFIRMED:
        return "already confirmed"
    return None


def _context(queued: _Queued, company: Company) -> Context:
    booking, client = queued.booking, queued.client
    return Context(
        client_name=client.name if client else None, salon=company.title,
        services=tuple(booking.services or ()) if booking else (), master=booking.staff_name if booking else None,
        starts_at=booking.starts_at if booking else None, timezone=company.timezone, address=company.address,
        client_phone=client.phone if client else None,
    )


def _outcome(kind: str, state: str, now: datetime, reason: str | None = None) -> dict[str, Any]:
    """The columns a message's outcome sets (counted in the metrics)."""
    MESSAGES.labels(kind=kind, outcome=state).inc()
    return {"state": state, "reason": reason[:255] if reason else None, "updated_at": now}


def _finish(message: Message, state: str, now: datetime, reason: str | None = None) -> None:
    for name, value in _outcome(message.kind, state, now, reason).items():
        setattr(message, name, value)


def send_next(company_id: int) -> Outcome:
    """Begin the salon's next queued message if its pacer allows (the caller holds the salon's lock).

    The message becomes ``sending`` (committed), "typing…" shows, and ``deliver`` hands the text to
    the gateway once the typing time has passed — no worker sleeps meanwhile.
    """
    company, session, stored = _salon(company_id) or (None, None, None)
    if company is None or not company.whatsapp_connected:
        db.session.rollback()
        return Outcome()  # waits, queued, until WhatsApp is back (the tick looks again)
    queued = _next_queued(company_id)
    if queued is None:
        db.session.rollback()
        return Outcome()
    message, now = queued.message, clock.now()
    why_not = _still_wanted(queued, now)
    if why_not:
        _finish(message, MessageState.SKIPPED, now, why_not)
        db.session.commit()
        return Outcome(again_in=0.0)
    probe_in = outages.probe_in(outages.WHATSAPP_GATEWAY)
    if probe_in > 0:
        db.session.rollback()
        return Outcome(again_in=probe_in)  # the gateway is away: wait for the next probe, queued
    session = session or session_for(company_id).gateway_session
    digits = whatsapp_digits(message.phone)
    try:
        exists = numbers.exists(company_id, session, digits)
    except GatewayError as exc:
        # An unreachable gateway is waited out, as in ``deliver``: the tries it cost never fail the message.
        return _retry_later(message, now, f"number check failed: {exc}", counted=not exc.unavailable)
    if not exists:
        _finish(message, MessageState.SKIPPED, now, "number is not on WhatsApp")
        db.session.commit()
        return Outcome(again_in=0.0)
    template = ((stored or settings_row(company_id)).templates or {}).get(message.kind)
    text = message.text or render(template, Kind(message.kind), _context(queued, company))
    typing = pacing.typing_seconds(text)
    slot = pacing.reserve(company_id, company.zone, lead=typing)
    if not slot.booked:
        PACING_WAITS.inc()
        db.session.rollback()
        return Outcome(again_in=slot.wait_seconds)
    message.text = text
    message.state, message.sending_at, message.handed_at, message.updated_at = MessageState.SENDING, utcnow(), None, now
    message.attempts += 1
    token = message.attempts
    db.session.commit()
    try:
        gateway().typing(session, digits, slot.lead_seconds)
    except GatewayError as exc:
        log.info("typing before message %s not shown: %s", message.id, exc)
    enqueue(Job.MESSAGING_DELIVER, message.id, token, after_commit=False, countdown=slot.lead_seconds or None)
    # Back when the number's next slot opens for a text typed as long as this one; a shorter next text
    # is booked at that slot all the same (it types a little longer) instead of a run finding it too soon.
    return Outcome(again_in=slot.gap_seconds + slot.lead_seconds - typing)


def _sending(message_id: int) -> tuple[Message, Company, str | None] | None:
    """The message (row-locked), its salon and the salon's gateway session, in one query."""
    query = (select(Message, Company, WhatsAppSession.gateway_session)
             .join(Company, Company.id == Message.company_id)
             .outerjoin(WhatsAppSession, WhatsAppSession.company_id == Message.company_id)
             .where(Message.id == message_id))
    if db.session.get_bind().dialect.name == "postgresql":
        query = query.with_for_update(of=Message)
    row = db.session.execute(query).first()
    return None if row is None else (row[0], row[1], row[2])


def deliver(message_id: int, token: int) -> str:
    """Hand a ``sending`` message to the gateway, once: a repeated or late task finds it handed and stops."""
    message, company, session = _sending(message_id) or (None, None, None)
    if message is None or company is None or message.state != MessageState.SENDING or message.attempts != token \
            or message.handed_at is not None:
        db.session.rollback()
        return "not mine"
    now = clock.now()
    if not company.whatsapp_connected:
        message.state, message.sending_at, message.updated_at = MessageState.QUEUED, None, now
        db.session.commit()
        return "waits for WhatsApp"
    wait = pacing.hold(message.company_id)
    if wait > 0:
        db.session.rollback()
        enqueue(Job.MESSAGING_DELIVER, message_id, token, after_commit=False, countdown=wait)
        return "paced"
    session = session or session_for(message.company_id).gateway_session
    message.handed_at = utcnow()
    text, company_id, phone, kind = message.text or "", message.company_id, message.phone, message.kind
    db.session.commit()  # from here on, a crash leaves it handed: failed by the lease, never sent twice
    try:
        try:
            gateway_id = gateway().send_text(session, whatsapp_digits(phone), text)
        finally:
            pacing.sent(company_id)
    except GatewayError as exc:
        if not exc.never_sent:
            _finish(message, MessageState.FAILED, now, f"outcome unknown, not sent again: {exc}")
        elif exc.unavailable:
            # The gateway is away, not the message at fault: it waits, queued, as long as its deadline allows.
            message.handed_at = None
            _retry_later(message, now, f"gateway unavailable for now: {exc}", counted=False)
            return "retry"
        elif exc.status in (408, 409, 422, 429):
            message.handed_at = None
            _retry_later(message, now, f"gateway busy for now: {exc}")
            return "retry"
        else:
            _finish(message, MessageState.FAILED, now, f"gateway refused: {exc}")
        db.session.commit()
        return message.state
    # One UPDATE: the row committed above is not loaded again to be changed.
    db.session.execute(
        update(Message).where(Message.id == message_id)
        .values(gateway_message_id=message_key(gateway_id),  # what receipts name it by, whatever the gateway
                sent_at=now, **_outcome(kind, MessageState.SENT, now))
        .execution_options(synchronize_session=False))
    db.session.commit()
    runtime.bus().emit(company_id, "message.sent", {"messageId": message_id, "kind": kind})
    return MessageState.SENT


def _retry_later(message: Message, now: datetime, reason: str, counted: bool = True) -> Outcome:
    """Back to the queue for another try, or failed once out of attempts (``counted``: the try was the
    message's own failure, not an outage of the gateway, which it waits out until its deadline)."""
    if counted and message.attempts >= runtime.settings().messaging_max_attempts:
        _finish(message, MessageState.FAILED, now, reason)
    else:
        message.state, message.reason, message.sending_at, message.updated_at = \
            MessageState.QUEUED, reason[:255], None, now
    db.session.commit()
    return Outcome(again_in=pacing.min_gap())


def _scheduled_key(company_id: int) -> str:
    return runtime.settings().key("messaging", "dispatch_scheduled", company_id)


def schedule(company_id: int, countdown: float = 0.0) -> bool:
    """Run the salon's dispatcher in ``countdown`` seconds unless a run is already scheduled."""
    mark = runtime.redis().set(_scheduled_key(company_id), 1, nx=True, ex=int(countdown) + 60)
    if mark:
        enqueue(Job.MESSAGING_DISPATCH, company_id, after_commit=False, countdown=countdown or None)
    return bool(mark)


def run_dispatcher(company_id: int) -> Outcome:
    """One run of the salon's dispatcher (at most one at a time per salon), and the next one scheduled."""
    settings = runtime.settings()
    runtime.redis().delete(_scheduled_key(company_id))
    hold = 4 * settings.waha_timeout_seconds + 30
    lock = runtime.redis().lock(settings.key("messaging", "dispatch_lock", company_id), timeout=hold)
    if not lock.acquire(blocking=False):
        return Outcome()
    try:
        outcome = send_next(company_id)
    finally:
        try:
            lock.release()
        except LockError:
            log.warning("dispatch lock of company %s expired before release", company_id)
    if outcome.again_in is not None:
        schedule(company_id, outcome.again_in)
    return outcome


def waiting_count(company_id: int) -> int:
    """How many of the salon's messages wait to be sent (shown while WhatsApp is disconnected)."""
    return int(db.session.scalar(
        select(func.count()).select_from(Message)
        .where(and_(Message.company_id == company_id, Message.state.in_(MessageState.WAITING)))
    ) or 0)
