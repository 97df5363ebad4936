"""Calls to YClients' partner API that run in the background."""

from __future__ import annotations

from celery import Task, shared_task

from services.callbacks import activation
from services.platform.jobs import Job


@shared_task(bind=True, name=Job.YCLIENTS_SEND_CALLBACK, max_retries=None, acks_late=True)
def send_callback(self: Task, company_id: int) -> str:
    """Deliver the company's activation callback; retried with backoff until final (idempotent)."""
    delay = activation.attempt_callback(company_id)
    if delay is not None:
        raise self.retry(countdown=delay)
    return "done"
