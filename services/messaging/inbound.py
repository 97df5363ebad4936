"""Clients' messages to the salon's number, and receipts of ours: replies acted on, states advanced.

A reply is stored once (per salon and WhatsApp message id) and read by ``replies.interpret``:

- «СТОП» stops every message of the salon to that phone (one acknowledgement), «СТАРТ» resumes;
- ``1``/«да» confirms and ``2``/«нет» asks to cancel — but only as the answer to a confirmation
  request we sent to that phone whose visit has not started; the latest such request is the one
  answered. A confirmation is written to YClients (attendance 2) by a retried task; a cancel
  request alerts the salon (its contact phone, and the log) and writes attendance −1 only where
  the salon enabled it. Anything else — or a yes with nothing to confirm — is kept for the salon.

Receipts move a sent message on (``sent → delivered → read``, or ``failed``), never back.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

from sqlalchemy import select

from models import Booking, Company, InboundMessage, Message, MessageState, OptOut, ReplyWrite, db
from services.companies import company_events
from services.messaging import attendance, outbox
from services.messaging.replies import Meaning, interpret
from services.messaging.settings import settings_row
from services.messaging.templates import Kind
from services.platform import clock, runtime
from services.platform.metrics import MESSAGES
from services.platform.transactions import add_unless_exists

log = logging.getLogger(__name__)

CONFIRMS = (Kind.CONFIRMATION_REQUEST.value, Kind.CONFIRMATION_REASK.value)
ACK_LIFETIME = timedelta(hours=12)
ORDER = (MessageState.SENT, MessageState.DELIVERED, MessageState.READ)
RECEIPT_STATE = {"sent": MessageState.SENT, "delivered": MessageState.DELIVERED, "read": MessageState.READ,
                 "failed": MessageState.FAILED}


def _answered_request(company_id: int, phone: str, now: datetime) -> Message | None:
    """The latest confirmation request sent to ``phone`` whose visit has not started yet."""
    return db.session.scalars(
        select(Message).join(Booking, Booking.id == Message.booking_id)
        .where(Message.company_id == company_id, Message.phone == phone, Message.kind.in_(CONFIRMS),
               Message.state.in_(MessageState.OUT), Booking.starts_at > now)
        .order_by(Message.sent_at.desc(), Message.id.desc()).limit(1)
    ).first()


def _ack(company_id: int, phone: str, kind: Kind, inbound_id: int, now: datetime,
         booking_id: int | None = None) -> None:
    outbox.enqueue_one(company_id, phone, kind, f"reply:{inbound_id}", now, now + ACK_LIFETIME, booking_id=booking_id)


def _opt(company_id: int, phone: str, meaning: Meaning, inbound_id: int, now: datetime) -> None:
    current = db.session.get(OptOut, (company_id, phone))
    if meaning is Meaning.STOP:
        if current is None and add_unless_exists(OptOut(company_id=company_id, phone=phone, created_at=now)):
            outbox.skip(db.session.scalars(select(Message.id).where(
                Message.company_id == company_id, Message.phone == phone,
                Message.state.in_(MessageState.WAITING))), "client opted out (СТОП)", now)
            _ack(company_id, phone, Kind.OPT_OUT_ACK, inbound_id, now)
    elif current is not None:
        db.session.delete(current)
        db.session.flush()
        _ack(company_id, phone, Kind.OPT_IN_ACK, inbound_id, now)


def _answer(company: Company, row: InboundMessage, request: Message, meaning: Meaning, now: datetime) -> None:
    row.message_id, row.booking_id = request.id, request.booking_id
    settings = settings_row(company.id)
    if meaning is Meaning.CONFIRM:
        _ack(company.id, row.phone, Kind.REPLY_CONFIRMED, row.id, now, request.booking_id)
        row.yclients_write = ReplyWrite.PENDING
    else:
        _ack(company.id, row.phone, Kind.REPLY_CANCEL_NOTED, row.id, now, request.booking_id)
        if settings.contact_phone:
            outbox.enqueue_one(company.id, settings.contact_phone, Kind.SALON_CANCEL_ALERT, f"reply:{row.id}", now,
                               now + ACK_LIFETIME, booking_id=request.booking_id)
        log.warning("company %s: the client of booking %s asked to cancel (reply %s)", company.id,
                    request.booking_id, row.id)
        if settings.cancel_writes_attendance:
            row.yclients_write = ReplyWrite.PENDING
    if row.yclients_write == ReplyWrite.PENDING:
        attendance.request_write(row)


def receive(company_id: int, gateway_message_id: str, phone: str, text: str, sent_at: datetime | None) -> int | None:
    """Store and act on one client message; the inbound row's id (None for a repeat of one already kept)."""
    company = db.session.get(Company, company_id)
    if company is None:
        return None
    now = clock.now()
    meaning = interpret(text)
    row = InboundMessage(company_id=company_id, gateway_message_id=gateway_message_id[:128], phone=phone,
                         text=text[:4000], received_at=sent_at or now, meaning=meaning.value,
                         yclients_write=ReplyWrite.NONE, write_attempts=0)
    if not add_unless_exists(row):
        return None
    if meaning in (Meaning.STOP, Meaning.START):
        _opt(company_id, phone, meaning, row.id, now)
    elif meaning in (Meaning.CONFIRM, Meaning.CANCEL):
        request = _answered_request(company_id, phone, now)
        if request is None:
            row.meaning = Meaning.OTHER.value  # nothing asked that this could answer: kept for the salon
        else:
            _answer(company, row, request, meaning, now)
    db.session.flush()
    bus = runtime.bus()
    data = {"inboundId": row.id, "phone": phone, "meaning": row.meaning, "bookingId": row.booking_id}
    from services.platform.transactions import on_commit

    on_commit(lambda: bus.emit(company_id, "message.reply", data))
    return row.id


def apply_receipt(company_id: int, gateway_message_id: str, status: str) -> bool:
    """Advance the sent message with that gateway id (never backwards); True when it changed."""
    state = RECEIPT_STATE.get(status)
    message = db.session.scalars(select(Message).where(
        Message.company_id == company_id, Message.gateway_message_id == gateway_message_id)).first()
    if message is None or state is None:
        return False
    now = clock.now()
    if state == MessageState.FAILED:
        if message.state not in MessageState.OUT:
            return False
        message.state, message.reason = MessageState.FAILED, "the gateway reported the message as not delivered"
    else:
        if message.state not in ORDER or ORDER.index(state) <= ORDER.index(message.state):
            return False
        message.state = state
        if state == MessageState.DELIVERED:
            message.delivered_at = now
        else:
            message.read_at = now
            message.delivered_at = message.delivered_at or now
    message.updated_at = now
    MESSAGES.labels(kind=message.kind, outcome=message.state).inc()
    company_events.publish_after_commit(company_id, "message.status", {"messageId": message.id,
                                                                       "state": message.state})
    return True
