"""Webhook inbox tasks: process one event, and the sweep that recovers lost or stuck ones."""

from __future__ import annotations

import logging

from celery import Task, shared_task

from models import EventStatus
from services.platform.jobs import Job, try_enqueue
from services.webhooks import admin, processing, rejections

log = logging.getLogger(__name__)


@shared_task(name=Job.WEBHOOKS_PROCESS, bind=True, acks_late=True, max_retries=None)
def process(self: Task, event_id: int) -> str:
    """Apply inbox event ``event_id`` once; on failure schedule the next attempt (backoff + jitter)."""
    result = processing.process_event(event_id)
    if result.status == EventStatus.FAILED and result.retry_in is not None:
        # The retry time is also in the row: if this message is lost, the sweep runs it when due.
        raise self.retry(countdown=result.retry_in, retry=False)
    return result.status


@shared_task(name=Job.WEBHOOKS_PROCESS_BATCH, acks_late=True)
def process_batch(event_ids: list[int]) -> dict[str, int]:
    """Apply the events one web process stored in one commit; failures are retried one by one."""
    outcomes: dict[str, int] = {}
    for event_id, result in processing.process_batch(event_ids).items():
        outcomes[result.status] = outcomes.get(result.status, 0) + 1
        if result.status == EventStatus.FAILED and result.retry_in is not None:
            # The retry time is in the row too: if this message is lost, the sweep runs it when due.
            try_enqueue(Job.WEBHOOKS_PROCESS, event_id, countdown=result.retry_in)
    return outcomes


@shared_task(name=Job.WEBHOOKS_SWEEP, acks_late=False, expires=60, ignore_result=True)
def sweep(received_older_than: float | None = None) -> int:
    """Enqueue events whose enqueue was lost, whose worker died, or whose retry time has come."""
    return len(admin.sweep(received_older_than))


@shared_task(name=Job.WEBHOOKS_PRUNE_REJECTED, acks_late=False, expires=600, ignore_result=True)
def prune_rejected() -> int:
    """Delete rejected deliveries older than ``WEBHOOK_REJECTED_RETENTION_HOURS``."""
    return rejections.prune()
