"""The messages table: storing what the planner decided, under idempotency keys, and dropping what no longer holds.

A planned message is inserted with ``ON CONFLICT (idempotency_key) DO NOTHING``: planning the same
change again — a retried task, a replayed webhook, two workers at once — inserts nothing new. A
message's key is ``company:booking:kind:slot``, so each reminder exists once per visit time and a
move announcement once per change.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any, cast

from sqlalchemy import Table, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from models import Message, MessageState, db
from services.companies import company_events
from services.messaging.planner import Plan
from services.messaging.templates import Kind

MESSAGES = cast(Table, Message.__table__)
REMINDER_KINDS = (Kind.REMINDER, Kind.CONFIRMATION_REQUEST, Kind.CONFIRMATION_REASK)


def idempotency_key(company_id: int, booking_id: int | None, kind: Kind, slot: str) -> str:
    """The key that makes one message one message."""
    return f"{company_id}:{booking_id or '-'}:{kind.value}:{slot}"[:200]


def _insert(rows: Sequence[Mapping[str, Any]]) -> list[int]:
    """Insert the rows, skipping keys that exist; the ids of those inserted."""
    if not rows:
        return []
    insert = pg_insert if db.session.get_bind().dialect.name == "postgresql" else sqlite_insert
    statement = (insert(MESSAGES).values(rows).on_conflict_do_nothing(index_elements=["idempotency_key"])
                 .returning(MESSAGES.c.id))
    ids = list(db.session.execute(statement).scalars())
    if ids:  # one company's rows per call: its salon page shows them live
        company_id = int(rows[0]["company_id"])
        company_events.publish_after_commit(company_id, "message.planned", {"companyId": company_id,
                                                                            "messageIds": ids})
    return ids


def waiting_kinds(booking_id: int) -> frozenset[Kind]:
    """The kinds of the booking's messages that have not gone out yet."""
    kinds = db.session.scalars(select(Message.kind).where(
        Message.booking_id == booking_id, Message.state.in_(MessageState.WAITING)).distinct())
    return frozenset(Kind(kind) for kind in kinds)


def store_plan(company_id: int, booking_id: int, phone: str | None, plan: Plan, now: datetime,
               dropped_because: str) -> list[int]:
    """Insert the plan's messages and drop the booking's waiting reminders it no longer has; the new ids."""
    keep = {(kind.value, slot) for kind, slot in plan.reminders}
    waiting = db.session.execute(
        select(Message.id, Message.kind, Message.slot).where(
            Message.booking_id == booking_id, Message.state.in_(MessageState.WAITING),
            Message.kind.in_([k.value for k in REMINDER_KINDS]))
    ).all()
    stale = [row.id for row in waiting if (row.kind, row.slot) not in keep]
    skip(stale, dropped_because, now)
    if plan.supersedes:
        superseded = db.session.scalars(select(Message.id).where(
            Message.booking_id == booking_id, Message.state.in_(MessageState.WAITING),
            Message.kind.in_([k.value for k in plan.supersedes])))
        skip(superseded, dropped_because, now)
    if phone is None:
        return []
    rows = [
        {"company_id": company_id, "booking_id": booking_id, "phone": phone, "kind": m.kind.value, "slot": m.slot,
         "idempotency_key": idempotency_key(company_id, booking_id, m.kind, m.slot), "state": MessageState.PLANNED,
         "priority": m.priority, "due_at": m.due_at, "expires_at": m.expires_at, "attempts": 0,
         "created_at": now, "updated_at": now}
        for m in plan.messages
    ]
    return _insert(rows)


def enqueue_one(company_id: int, phone: str, kind: Kind, slot: str, now: datetime, expires_at: datetime,
                booking_id: int | None = None, text: str | None = None, priority: int = 0) -> int | None:
    """One message due now (a reply's acknowledgement, an alert to the salon); None when its key exists."""
    ids = _insert([{
        "company_id": company_id, "booking_id": booking_id, "phone": phone, "kind": kind.value, "slot": slot,
        "idempotency_key": idempotency_key(company_id, booking_id, kind, slot), "state": MessageState.PLANNED,
        "priority": priority, "due_at": now, "expires_at": expires_at, "text": text, "attempts": 0,
        "created_at": now, "updated_at": now,
    }])
    return ids[0] if ids else None


def skip(message_ids: Iterable[int], reason: str, now: datetime) -> int:
    """Mark waiting messages skipped with ``reason``; how many were still waiting."""
    ids = list(message_ids)
    if not ids:
        return 0
    result = db.session.execute(
        update(Message).where(Message.id.in_(ids), Message.state.in_(MessageState.WAITING))
        .values(state=MessageState.SKIPPED, reason=reason[:255], updated_at=now)
    )
    return int(result.rowcount or 0)  # type: ignore[attr-defined]


def resend(company_id: int, message_ids: Iterable[int], now: datetime) -> list[int]:
    """Put the salon's failed messages (all, or these) back in line, unless their deadline passed; the ids.

    An operator's decision: a message that failed with an unknown outcome may have reached the client."""
    moment = now
    query = update(Message).where(Message.company_id == company_id, Message.state == MessageState.FAILED,
                                  Message.expires_at > moment)
    ids = list(message_ids)
    if ids:
        query = query.where(Message.id.in_(ids))
    values = dict(state=MessageState.PLANNED, due_at=moment, attempts=0, reason=None, sending_at=None, handed_at=None,
                  updated_at=moment)
    return sorted(db.session.execute(query.values(**values).returning(Message.id)).scalars())
