"""Calls to YClients' partner API that run in the background."""

from __future__ import annotations

from celery import Task, shared_task

from models import db
from services.callbacks import activation
from services.companies import details
from services.platform.backoff import backoff
from services.platform.jobs import Job


@shared_task(bind=True, name=Job.YCLIENTS_SEND_CALLBACK, max_retries=None, acks_late=True)
def send_callback(self: Task, company_id: int) -> str:
    """Deliver the company's activation callback; retried with backoff until final (idempotent)."""
    delay = activation.attempt_callback(company_id)
    if delay is not None:
        raise self.retry(countdown=delay)
    return "done"


@shared_task(name=Job.YCLIENTS_CALLBACKS_SWEEP, ignore_result=True)
def callbacks_sweep() -> int:
    """Beat: send again the activation callbacks whose task was lost."""
    companies = activation.resend_lost()
    db.session.commit()
    return len(companies)


@shared_task(bind=True, name=Job.YCLIENTS_FETCH_COMPANY, max_retries=8, acks_late=True)
def fetch_company(self: Task, company_id: int) -> str:
    """Keep the salon's title, address and time zone as YClients has them (after activation)."""
    stored = details.refresh(company_id)
    if stored is None:
        raise self.retry(countdown=backoff(self.request.retries + 1, 5.0, 600.0))
    return "stored" if stored else "none"
