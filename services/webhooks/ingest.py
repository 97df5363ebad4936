"""Storing one delivery in the inbox: the lifecycle webhook's path, and the inbox writer's fallback.

(Company webhooks are stored in batches by ``services.webhooks.writer``.) Nothing slow or external
runs here. The insert is ``ON CONFLICT (dedupe_key) DO NOTHING RETURNING id`` (one round trip; no
id back means a duplicate). The enqueue happens after the commit and fails fast: if the broker is
down the event stays ``received`` and ``webhooks.sweep`` enqueues it later. A failure to store is
logged and counted, never raised: the sender always gets its 200.
"""

from __future__ import annotations

import logging
import sqlite3
import uuid
from dataclasses import dataclass
from typing import Any

import psycopg2
from prometheus_client import Counter
from sqlalchemy import exc as sa_exc
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from models import EventStatus, db, utcnow
from services.platform.jobs import Job, try_enqueue
from services.platform.metrics import WEBHOOKS_RECEIVED
from services.webhooks import EVENTS

log = logging.getLogger(__name__)



class Outcome:
    """What became of one delivery (the ``outcome`` label of the webhook metric)."""

    ACCEPTED = "accepted"
    DUPLICATE = "duplicate"
    REJECTED = "rejected"
    SPOOLED = "spooled"
    STORE_FAILED = "store_failed"


@dataclass(frozen=True)
class Received:
    """The result of ingesting one delivery."""

    outcome: str
    event_id: int | None = None
    reason: str | None = None


SQLITE_REFUSALS = ("no such table", "no such column", "table ", "near ")


def database_unavailable(exc: BaseException) -> bool:
    """True for a failure of the database itself (unreachable, restarting, locked), not of a row it refused."""
    if isinstance(exc, sa_exc.DBAPIError) and exc.connection_invalidated:
        return True
    # SQLite reports a statement it refuses (a missing table or column) as an OperationalError too.
    cause = getattr(exc, "orig", exc)
    if isinstance(cause, sqlite3.OperationalError) and str(cause).startswith(SQLITE_REFUSALS):
        return False
    return isinstance(exc, (sa_exc.OperationalError, sa_exc.InterfaceError, psycopg2.OperationalError,
                            psycopg2.InterfaceError, sqlite3.OperationalError))


def insert_event(**values: Any) -> int | None:
    """``INSERT … ON CONFLICT (dedupe_key) DO NOTHING RETURNING id``; None when the key exists."""
    dialect = db.session.get_bind().dialect.name
    insert = pg_insert if dialect == "postgresql" else sqlite_insert
    values.setdefault("status", EventStatus.RECEIVED)
    values.setdefault("attempts", 0)
    values.setdefault("received_at", utcnow())
    statement = (
        insert(EVENTS)
        .values(**values)
        .on_conflict_do_nothing(index_elements=["dedupe_key"])
        .returning(EVENTS.c.id)
    )
    return db.session.execute(statement).scalar()



def rejected_values(
    company_id: int | None, source: str, reason: str, payload: dict[str, Any], request_id: str | None
) -> dict[str, Any]:
    """Column values of a rejected delivery: never processed, unique key per delivery."""
    return {
        "company_id": company_id,
        "source": source,
        "dedupe_key": f"rejected:{uuid.uuid4().hex}",
        "type": "rejected",
        "payload": payload,
        "status": EventStatus.REJECTED,
        "reject_reason": reason[:255],
        "request_id": request_id,
    }


def store(values: dict[str, Any], *, enqueue_after: bool, counter: Counter = WEBHOOKS_RECEIVED,
          raise_unavailable: bool = False) -> Received:
    """Insert one delivery, commit, optionally enqueue; storage failures are logged, not raised (but an
    unreachable database is, with ``raise_unavailable``: the caller keeps the delivery elsewhere)."""
    rejected = values.get("status") == EventStatus.REJECTED
    try:
        event_id = insert_event(**values)
        db.session.commit()
    except Exception as exc:
        db.session.rollback()
        if raise_unavailable and database_unavailable(exc):
            raise
        log.exception("webhook delivery could not be stored (source=%s)", values.get("source"))
        counter.labels(values.get("source", "unknown"), Outcome.STORE_FAILED).inc()
        return Received(Outcome.STORE_FAILED)
    if rejected:
        outcome = Outcome.REJECTED
    elif event_id is None:
        outcome = Outcome.DUPLICATE
    else:
        outcome = Outcome.ACCEPTED
        if enqueue_after:
            try_enqueue(Job.WEBHOOKS_PROCESS, event_id)
    counter.labels(values["source"], outcome).inc()
    return Received(outcome, event_id, values.get("reject_reason"))
