"""Operating the inbox: list events, replay failed or dead ones, counts by status, the recovery sweep."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import timedelta
from typing import Any

from sqlalchemy import and_, func, or_, select, update

from models import EventStatus, WebhookEvent, db, utcnow
from services.platform import runtime
from services.platform.dates import iso
from services.platform.errors import InvalidInput
from services.platform.jobs import Job, try_enqueue, waiting
from services.webhooks import EVENTS

REPLAYABLE = (EventStatus.FAILED, EventStatus.DEAD)
MAX_LIST = 500
SWEEP_BATCH = 1000
SWEEP_TASK_EVENTS = 100


def serialise(event: WebhookEvent, with_payload: bool = False) -> dict[str, Any]:
    """The operator's view of one inbox event."""
    body: dict[str, Any] = {
        "id": event.id,
        "company_id": event.company_id,
        "source": event.source,
        "type": event.type,
        "status": event.status,
        "attempts": event.attempts,
        "last_error": event.last_error,
        "reject_reason": event.reject_reason,
        "received_at": iso(event.received_at),
        "processed_at": iso(event.processed_at),
        "next_attempt_at": iso(event.next_attempt_at),
    }
    if with_payload:
        body["payload"] = event.payload
    return body


def list_events(
    status: str | None = None, company_id: int | None = None, limit: int = 50, before_id: int | None = None
) -> list[WebhookEvent]:
    """Events newest first, filtered by status and company; page with ``before_id``."""
    if status is not None and status not in EventStatus.ALL:
        raise InvalidInput(f"status must be one of: {', '.join(EventStatus.ALL)}")
    if not 1 <= limit <= MAX_LIST:
        raise InvalidInput(f"limit must be between 1 and {MAX_LIST}")
    query = select(WebhookEvent).order_by(WebhookEvent.id.desc()).limit(limit)
    if status is not None:
        query = query.where(WebhookEvent.status == status)
    if company_id is not None:
        query = query.where(WebhookEvent.company_id == company_id)
    if before_id is not None:
        query = query.where(WebhookEvent.id < before_id)
    return list(db.session.scalars(query))


def counts_by_status() -> dict[str, int]:
    """How many inbox events are in each status (every status present, zeros included)."""
    rows = db.session.execute(select(WebhookEvent.status, func.count()).group_by(WebhookEvent.status))
    counts = dict.fromkeys(EventStatus.ALL, 0)
    counts.update({status: int(n) for status, n in rows})
    return counts


def replay(event_ids: Iterable[int] = (), status: str | None = None, limit: int = MAX_LIST) -> dict[str, list[int]]:
    """Put failed/dead events (by id, or every one in ``status``) back to ``received`` with fresh attempts,
    commit, and enqueue them. Other events are reported as skipped, never touched."""
    ids = sorted(set(event_ids))
    if status is not None and status not in REPLAYABLE:
        raise InvalidInput(f"only {' and '.join(REPLAYABLE)} events can be replayed")
    if not ids and status is None:
        raise InvalidInput("give event ids or a status to replay")
    table = EVENTS.c
    query = update(EVENTS).where(table.status.in_(REPLAYABLE))
    if ids:
        query = query.where(table.id.in_(ids))
    if status is not None:
        chosen = select(table.id).where(table.status == status).order_by(table.id).limit(limit)
        query = query.where(table.id.in_(chosen.scalar_subquery()))
    values = dict(status=EventStatus.RECEIVED, attempts=0, next_attempt_at=None)
    replayed = sorted(db.session.execute(query.values(**values).returning(table.id)).scalars())
    db.session.commit()
    for event_id in replayed:
        try_enqueue(Job.WEBHOOKS_PROCESS, event_id)
    return {"replayed": replayed, "skipped": [i for i in ids if i not in set(replayed)]}


def due_event_ids(received_older_than: float | None = None, received: bool = True) -> list[int]:
    """Events a worker should be running but is not: ``received`` for a while (enqueue lost; left out
    with ``received=False``), ``processing`` past their lease (worker died), ``failed`` whose retry time
    has come."""
    now = utcnow()
    settings = runtime.settings()
    older = settings.webhook_sweep_after_seconds if received_older_than is None else received_older_than
    table = EVENTS.c
    cutoff = now - timedelta(seconds=older)
    overdue = and_(table.status.in_((EventStatus.PROCESSING, EventStatus.FAILED)), table.next_attempt_at <= cutoff)
    if received:
        overdue = or_(and_(table.status == EventStatus.RECEIVED, table.received_at <= cutoff), overdue)
    query = select(table.id).where(overdue).order_by(table.id).limit(SWEEP_BATCH)
    return list(db.session.scalars(query))


def sweep(received_older_than: float | None = None) -> list[int]:
    """Enqueue every due event (see ``due_event_ids``), ``SWEEP_TASK_EVENTS`` a task; the ids it enqueued.

    While webhook tasks wait in their queue, events still ``received`` are left to them: a backlog is not
    a lost enqueue, and sending its events again (as this did, a thousand every five seconds) only made
    the worker run each twice while the backlog grew. They are swept once the queue is empty.
    """
    backlog = waiting(Job.WEBHOOKS_PROCESS_BATCH)
    ids = due_event_ids(received_older_than, received=not backlog)
    db.session.rollback()
    sent: list[int] = []
    for start in range(0, len(ids), SWEEP_TASK_EVENTS):
        chunk = ids[start:start + SWEEP_TASK_EVENTS]
        if try_enqueue(Job.WEBHOOKS_PROCESS_BATCH, chunk):
            sent.extend(chunk)
    return sent
