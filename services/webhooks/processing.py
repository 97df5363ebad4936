"""Processing inbox events: claim them, apply them, record the outcome (retry schedule, dead letter).

The claim is one conditional UPDATE (``received``/``failed``, or ``processing`` whose lease ran
out → ``processing``, attempts + 1, lease until ``next_attempt_at``), committed before any work,
so two workers never both apply an event and a worker killed mid-task leaves an event the sweep can
hand to another worker once the lease expires. The work and the ``processed`` mark commit together,
and only while the claim is still ours.

A batch (the events one web process stored together) is claimed with one UPDATE and applied in one
transaction: its mirror rows locked at once in key order, one UPDATE marking every event processed,
one COMMIT. If anything in that shared transaction fails — one bad event, a lost claim — it is
rolled back and each claimed event runs in a transaction of its own, exactly as a single event does,
so one failure never holds back the others.

Just before each commit the booking and client changes it made go to the hook's receivers
(``services.webhooks.changes.deliver``), so what they write commits with the event or not at all;
nothing is announced for a transaction that rolled back.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from sqlalchemy import and_, or_, select, tuple_, update

from models import EventStatus, WebhookEvent, db, utcnow
from services.companies.company_events import publish_after_commit
from services.platform import runtime
from services.platform.backoff import backoff
from services.webhooks import EVENTS, changes, lifecycle, mirror
from services.webhooks.parsing import BOOKING_TYPES, CLIENT_TYPES

log = logging.getLogger(__name__)

PUSHED_EVENT = {
    "booking_created": "booking.created",
    "booking_updated": "booking.updated",
    "booking_cancelled": "booking.cancelled",
    "client_created": "client.created",
    "client_updated": "client.updated",
}


@dataclass(frozen=True)
class Result:
    """What one run did: ``processed``, ``skipped`` (not ours to run), ``failed`` or ``dead``."""

    status: str
    retry_in: float | None = None


def retry_delay(attempt: int) -> float:
    """The delay before a failed event's next attempt."""
    settings = runtime.settings()
    return backoff(attempt, settings.webhook_retry_base_seconds, settings.webhook_retry_max_seconds)


class LostClaim(RuntimeError):
    """An event of the batch was taken over by another run (its lease ran out) before the commit."""


def claim_many(event_ids: list[int]) -> dict[int, int]:
    """Take the events for this run: their attempt numbers by id (those another run owns or
    finished are left out)."""
    if not event_ids:
        return {}
    now = utcnow()
    lease = timedelta(seconds=runtime.settings().webhook_processing_timeout_seconds)
    table = EVENTS.c
    result = db.session.execute(
        update(EVENTS)
        .where(
            table.id.in_(event_ids),
            or_(
                table.status.in_((EventStatus.RECEIVED, EventStatus.FAILED)),
                and_(table.status == EventStatus.PROCESSING, table.next_attempt_at < now),
            ),
        )
        .values(status=EventStatus.PROCESSING, attempts=table.attempts + 1, next_attempt_at=now + lease)
        .returning(table.id, table.attempts)
    )
    claims = {row.id: row.attempts for row in result}
    db.session.commit()
    return claims


def claim(event_id: int) -> int | None:
    """Take the event for this run; its attempt number, or None if another run owns or finished it."""
    return claim_many([event_id]).get(event_id)


Handler = Callable[[WebhookEvent, mirror.LockedRows], dict[str, Any] | None]


def _handler(event_type: str) -> Handler | None:
    if event_type in BOOKING_TYPES:
        return mirror.apply_booking
    if event_type in CLIENT_TYPES:
        return mirror.apply_client
    if event_type in lifecycle.EVENT_TYPES:
        return lambda event, _rows: lifecycle.apply(event)
    return None  # stored and marked processed, nothing to mirror (finances_operation.* …)


def _run_handler(event: WebhookEvent, rows: mirror.LockedRows) -> None:
    handler = _handler(event.type)
    pushed = handler(event, rows) if handler is not None and event.company_id is not None else None
    if pushed is not None and event.type in PUSHED_EVENT:
        publish_after_commit(event.company_id, PUSHED_EVENT[event.type], pushed)  # type: ignore[arg-type]


def _done() -> dict[str, Any]:
    return dict(status=EventStatus.PROCESSED, processed_at=utcnow(), next_attempt_at=None, last_error=None)


def _finish(event_id: int, attempt: int, **values: Any) -> bool:
    """Set the outcome only while the claim of ``attempt`` is still ours."""
    table = EVENTS.c
    result = db.session.execute(
        update(EVENTS)
        .where(table.id == event_id, table.status == EventStatus.PROCESSING, table.attempts == attempt)
        .values(**values)
    )
    return bool(result.rowcount)  # type: ignore[attr-defined]


def _apply(event_id: int, attempt: int) -> bool:
    event = db.session.get(WebhookEvent, event_id, populate_existing=True)
    assert event is not None
    _run_handler(event, {})
    if not _finish(event_id, attempt, **_done()):
        db.session.rollback()
        return False
    changes.deliver()
    db.session.commit()
    return True


def _apply_together(claims: dict[int, int]) -> None:
    """Apply every claimed event in one transaction, or raise (and leave it to the caller to roll back)."""
    events = db.session.scalars(
        select(WebhookEvent).where(WebhookEvent.id.in_(claims)).order_by(WebhookEvent.id)
        .execution_options(populate_existing=True)
    ).all()
    rows = mirror.lock_rows(events)
    for event in events:
        _run_handler(event, rows)
    table = EVENTS.c
    result = db.session.execute(
        update(EVENTS)
        .where(tuple_(table.id, table.attempts).in_(list(claims.items())), table.status == EventStatus.PROCESSING)
        .values(**_done())
    )
    if result.rowcount != len(claims):  # type: ignore[attr-defined]
        raise LostClaim(f"{len(claims) - result.rowcount} of {len(claims)} claims lost")  # type: ignore[attr-defined]
    changes.deliver()
    db.session.commit()


def _record_failure(event_id: int, attempt: int, error: str, permanent: bool) -> Result:
    dead = permanent or attempt >= runtime.settings().webhook_max_attempts
    delay = None if dead else retry_delay(attempt)
    values: dict[str, Any] = {"last_error": error[:4000]}
    if dead:
        values.update(status=EventStatus.DEAD, next_attempt_at=None)
    else:
        assert delay is not None
        values.update(status=EventStatus.FAILED, next_attempt_at=utcnow() + timedelta(seconds=delay))
    _finish(event_id, attempt, **values)
    db.session.commit()
    if dead:
        log.error("webhook event %s is dead after %s attempts: %s", event_id, attempt, error)
        return Result(EventStatus.DEAD)
    return Result(EventStatus.FAILED, retry_in=delay)


def process_event(event_id: int) -> Result:
    """Run one event once (safe to call any number of times, from any number of workers)."""
    attempt = claim(event_id)
    if attempt is None:
        return Result("skipped")
    return _run_claimed(event_id, attempt)


def process_batch(event_ids: list[int]) -> dict[int, Result]:
    """Run events together (safe to call any number of times, from any number of workers); the
    outcome of each event this run claimed."""
    claims = claim_many(event_ids)
    results = {event_id: Result("skipped") for event_id in event_ids if event_id not in claims}
    if not claims:
        return results
    try:
        _apply_together(claims)
    except Exception as exc:
        db.session.rollback()
        log.info("batch of %s webhook events is run one by one (%s: %s)", len(claims), type(exc).__name__, exc)
        return results | {event_id: _run_claimed(event_id, attempt) for event_id, attempt in claims.items()}
    return results | {event_id: Result(EventStatus.PROCESSED) for event_id in claims}


def _run_claimed(event_id: int, attempt: int) -> Result:
    try:
        applied = _apply(event_id, attempt)
    except Exception as exc:
        db.session.rollback()
        permanent = isinstance(exc, mirror.Unprocessable | lifecycle.Unprocessable)
        if not permanent:
            log.exception("webhook event %s failed (attempt %s)", event_id, attempt)
        return _record_failure(event_id, attempt, f"{type(exc).__name__}: {exc}", permanent)
    return Result(EventStatus.PROCESSED if applied else "skipped")
