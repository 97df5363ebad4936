"""Webhook inbox tasks: process one event, and the sweep that recovers lost or stuck ones."""

from __future__ import annotations

from celery import Task, shared_task

from models import EventStatus
from services.webhooks import admin, processing


@shared_task(name="webhooks.process", bind=True, acks_late=True, max_retries=None)
def process(self: Task, event_id: int) -> str:
    """Apply inbox event ``event_id`` once; on failure schedule the next attempt (backoff + jitter)."""
    result = processing.process_event(event_id)
    if result.status == EventStatus.FAILED and result.retry_in is not None:
        # The retry time is also in the row: if this message is lost, the sweep runs it when due.
        raise self.retry(countdown=result.retry_in, retry=False)
    return result.status


@shared_task(name="webhooks.sweep", acks_late=False, expires=60)
def sweep(received_older_than: float | None = None) -> int:
    """Enqueue events whose enqueue was lost, whose worker died, or whose retry time has come."""
    return len(admin.sweep(received_older_than))
