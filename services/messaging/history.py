"""What a salon sees of its messages: the log (filters, paging), replies, and the numbers of the last days."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, func, or_, select

from models import Booking, Client, Company, InboundMessage, Message, MessageState, OptOut, db
from services.messaging.replies import Meaning
from services.messaging.templates import Kind
from services.phones import normalise_phone
from services.platform import clock
from services.platform.dates import iso
from services.platform.errors import InvalidInput

MAX_PAGE = 200
MAX_DAYS = 90


def serialise(message: Message, client_name: str | None = None) -> dict[str, Any]:
    """One message as the log shows it."""
    return {
        "id": message.id, "kind": message.kind, "state": message.state, "phone": message.phone,
        "client_name": client_name, "booking_id": message.booking_id, "text": message.text,
        "reason": message.reason, "due_at": iso(message.due_at), "expires_at": iso(message.expires_at),
        "sent_at": iso(message.sent_at), "delivered_at": iso(message.delivered_at), "read_at": iso(message.read_at),
        "created_at": iso(message.created_at),
    }


def serialise_reply(row: InboundMessage) -> dict[str, Any]:
    """One client message as the salon sees it."""
    return {"id": row.id, "phone": row.phone, "text": row.text, "meaning": row.meaning,
            "booking_id": row.booking_id, "received_at": iso(row.received_at), "yclients_write": row.yclients_write}


def list_messages(company_id: int, state: str | None = None, kind: str | None = None, search: str | None = None,
                  limit: int = 50, before_id: int | None = None) -> list[dict[str, Any]]:
    """The salon's messages, newest first; ``search`` matches a client's phone or name."""
    if state is not None and state not in MessageState.ALL:
        raise InvalidInput(f"state: одно из {', '.join(MessageState.ALL)}")
    if kind is not None and kind not in {k.value for k in Kind}:
        raise InvalidInput("kind: неизвестный вид сообщения")
    if not 1 <= limit <= MAX_PAGE:
        raise InvalidInput(f"limit: от 1 до {MAX_PAGE}")
    query = (select(Message, Client.name).outerjoin(Booking, Booking.id == Message.booking_id)
             .outerjoin(Client, Client.id == Booking.client_id)
             .where(Message.company_id == company_id).order_by(Message.id.desc()).limit(limit))
    if state:
        query = query.where(Message.state == state)
    if kind:
        query = query.where(Message.kind == kind)
    if before_id:
        query = query.where(Message.id < before_id)
    if search:
        text = search.strip()[:100]
        phone = normalise_phone(text)
        conditions: list[ColumnElement[bool]] = [Client.name.contains(text, autoescape=True)]
        conditions.append(Message.phone == phone if phone else Message.phone.contains(text.lstrip("+"),
                                                                                      autoescape=True))
        query = query.where(or_(*conditions))
    found = [serialise(message, name) for message, name in db.session.execute(query)]
    answers = _answers([row["id"] for row in found])
    for row in found:
        row["reply"] = answers.get(row["id"])
    return found


def _answers(message_ids: list[int]) -> dict[int, dict[str, Any]]:
    """The latest client reply matched to each of these messages (its meaning and text)."""
    if not message_ids:
        return {}
    rows = db.session.scalars(select(InboundMessage).where(InboundMessage.message_id.in_(message_ids))
                              .order_by(InboundMessage.id))
    return {row.message_id: {"meaning": row.meaning, "text": row.text} for row in rows if row.message_id}


def upcoming(company_id: int, limit: int = 50) -> list[dict[str, Any]]:
    """The salon's messages waiting to go out, soonest first (today's and the days ahead)."""
    if not 1 <= limit <= MAX_PAGE:
        raise InvalidInput(f"limit: от 1 до {MAX_PAGE}")
    query = (select(Message, Client.name).outerjoin(Booking, Booking.id == Message.booking_id)
             .outerjoin(Client, Client.id == Booking.client_id)
             .where(Message.company_id == company_id, Message.state.in_(MessageState.WAITING))
             .order_by(Message.due_at, Message.id).limit(limit))
    return [serialise(message, name) for message, name in db.session.execute(query)]


def list_replies(company_id: int, limit: int = 50, before_id: int | None = None) -> list[dict[str, Any]]:
    """The salon's clients' messages, newest first."""
    if not 1 <= limit <= MAX_PAGE:
        raise InvalidInput(f"limit: от 1 до {MAX_PAGE}")
    query = (select(InboundMessage).where(InboundMessage.company_id == company_id)
             .order_by(InboundMessage.id.desc()).limit(limit))
    if before_id:
        query = query.where(InboundMessage.id < before_id)
    return [serialise_reply(row) for row in db.session.scalars(query)]


def _day(moment: datetime | None, company: Company) -> str | None:
    return moment.astimezone(company.zone).date().isoformat() if moment else None


def stats(company: Company, days: int = 30) -> dict[str, Any]:
    """Sent, delivered, read, failed, confirmed, cancelled and opted out over the last ``days`` (salon days)."""
    if not 1 <= days <= MAX_DAYS:
        raise InvalidInput(f"days: от 1 до {MAX_DAYS}")
    now = clock.now()
    since = now - timedelta(days=days)
    per_day: dict[str, dict[str, int]] = {}

    def bump(day: str | None, name: str) -> None:
        if day is not None:
            per_day.setdefault(day, dict.fromkeys(TOTALS, 0))[name] += 1

    rows = db.session.execute(
        select(Message.state, Message.sent_at, Message.updated_at).where(
            Message.company_id == company.id, Message.updated_at >= since,
            Message.state.in_((*MessageState.OUT, MessageState.FAILED)))
    )
    for state, sent_at, updated_at in rows:
        if state == MessageState.FAILED:
            bump(_day(updated_at, company), "failed")
            continue
        bump(_day(sent_at, company), "sent")
        if state in (MessageState.DELIVERED, MessageState.READ):
            bump(_day(sent_at, company), "delivered")
        if state == MessageState.READ:
            bump(_day(sent_at, company), "read")
    replies = db.session.execute(
        select(InboundMessage.meaning, InboundMessage.received_at).where(
            InboundMessage.company_id == company.id, InboundMessage.received_at >= since,
            InboundMessage.meaning.in_((Meaning.CONFIRM.value, Meaning.CANCEL.value, Meaning.STOP.value)))
    )
    names = {Meaning.CONFIRM.value: "confirmed", Meaning.CANCEL.value: "cancelled", Meaning.STOP.value: "opted_out"}
    for meaning, received_at in replies:
        bump(_day(received_at, company), names[meaning])
    totals = {name: sum(day[name] for day in per_day.values()) for name in TOTALS}
    asked = int(db.session.scalar(select(func.count()).select_from(Message).where(
        Message.company_id == company.id, Message.sent_at >= since,
        Message.kind.in_((Kind.CONFIRMATION_REQUEST.value, Kind.CONFIRMATION_REASK.value)))) or 0)
    opted_out_now = int(db.session.scalar(select(func.count()).select_from(OptOut).where(
        OptOut.company_id == company.id)) or 0)
    return {
        "days": days, "since": iso(since), "totals": totals,
        "confirmation_rate": round(totals["confirmed"] / asked, 3) if asked else None,
        "confirmation_requests": asked, "opted_out_now": opted_out_now,
        "per_day": [{"date": day, **per_day[day]} for day in sorted(per_day)],
    }


TOTALS = ("sent", "delivered", "read", "failed", "confirmed", "cancelled", "opted_out")
