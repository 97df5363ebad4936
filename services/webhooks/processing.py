"""Processing one inbox event: claim it, apply it, record the outcome (retry schedule, dead letter).

The claim is one conditional UPDATE (``received``/``failed``, or ``processing`` whose lease ran
out → ``processing``, attempts + 1, lease until ``next_attempt_at``), committed before any work,
so two workers never both apply an event and a worker killed mid-task leaves an event the sweep can
hand to another worker once the lease expires. The work and the ``processed`` mark commit together,
and only while the claim is still ours.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from sqlalchemy import and_, or_, update

from models import EventStatus, WebhookEvent, db, utcnow
from services import runtime
from services.company_events import publish_after_commit
from services.webhooks import EVENTS, lifecycle, mirror
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


def backoff(attempt: int) -> float:
    """Delay before retry number ``attempt`` (1-based): exponential, capped, with full jitter above half."""
    settings = runtime.settings()
    ceiling = min(settings.webhook_retry_max_seconds, settings.webhook_retry_base_seconds * 2 ** (attempt - 1))
    return ceiling / 2 + random.uniform(0, ceiling / 2)


def claim(event_id: int) -> int | None:
    """Take the event for this run; its attempt number, or None if another run owns or finished it."""
    now = utcnow()
    lease = timedelta(seconds=runtime.settings().webhook_processing_timeout_seconds)
    table = EVENTS.c
    result = db.session.execute(
        update(EVENTS)
        .where(
            table.id == event_id,
            or_(
                table.status.in_((EventStatus.RECEIVED, EventStatus.FAILED)),
                and_(table.status == EventStatus.PROCESSING, table.next_attempt_at < now),
            ),
        )
        .values(status=EventStatus.PROCESSING, attempts=table.attempts + 1, next_attempt_at=now + lease)
        .returning(table.attempts)
    )
    attempt = result.scalar()
    db.session.commit()
    return attempt


def _handler(event_type: str) -> Callable[[WebhookEvent], dict[str, Any] | None] | None:
    if event_type in BOOKING_TYPES:
        return mirror.apply_booking
    if event_type in CLIENT_TYPES:
        return mirror.apply_client
    if event_type in lifecycle.EVENT_TYPES:
        return lifecycle.apply
    return None  # stored and marked processed, nothing to mirror (finances_operation.* …)


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
    handler = _handler(event.type)
    pushed = handler(event) if handler is not None and event.company_id is not None else None
    if pushed is not None and event.type in PUSHED_EVENT:
        publish_after_commit(event.company_id, PUSHED_EVENT[event.type], pushed)  # type: ignore[arg-type]
    done = dict(status=EventStatus.PROCESSED, processed_at=utcnow(), next_attempt_at=None, last_error=None)
    if not _finish(event_id, attempt, **done):
        db.session.rollback()
        return False
    db.session.commit()
    return True


def _record_failure(event_id: int, attempt: int, error: str, permanent: bool) -> Result:
    dead = permanent or attempt >= runtime.settings().webhook_max_attempts
    delay = None if dead else backoff(attempt)
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
    try:
        applied = _apply(event_id, attempt)
    except Exception as exc:
        db.session.rollback()
        permanent = isinstance(exc, mirror.Unprocessable | lifecycle.Unprocessable)
        if not permanent:
            log.exception("webhook event %s failed (attempt %s)", event_id, attempt)
        return _record_failure(event_id, attempt, f"{type(exc).__name__}: {exc}", permanent)
    return Result(EventStatus.PROCESSED if applied else "skipped")
