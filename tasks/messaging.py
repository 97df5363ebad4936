"""Messaging tasks: the beat tick that finds due messages, each salon's dispatcher, YClients attendance writes.

Every task takes ids, commits at its end and is safe to run twice: the tick only moves rows that
are still due, a dispatcher runs under the salon's lock, and an attendance write checks its row.
"""

from __future__ import annotations

from celery import Task, shared_task

from models import db
from services.messaging import attendance, booking_changes, dispatch
from services.platform import clock
from services.platform.jobs import Job


@shared_task(name=Job.MESSAGING_TICK, acks_late=False, expires=30, ignore_result=True)
def tick() -> int:
    """Expire what is too late, queue what is due, make sure each salon with work has a dispatcher, and
    send again the attendance writes whose task was lost."""
    now = clock.now()
    dispatch.expire_and_recover(now)
    attendance.resend_lost()
    companies = dispatch.claim_due(now)
    db.session.commit()
    for company_id in companies:
        dispatch.schedule(company_id)
    return len(companies)


@shared_task(name=Job.MESSAGING_DISPATCH, acks_late=True, ignore_result=True)
def dispatch_company(company_id: int) -> int | None:
    """Send the salon's next message when its pacer allows; the next run is scheduled by the service."""
    return dispatch.run_dispatcher(company_id).sent


@shared_task(name=Job.MESSAGING_DELIVER, acks_late=True, ignore_result=True)
def deliver(message_id: int, token: int) -> str:
    """Hand one message, whose typing time has passed, to the gateway (once, whatever redelivers it)."""
    return dispatch.deliver(message_id, token)


@shared_task(name=Job.MESSAGING_WRITE_ATTENDANCE, bind=True, max_retries=None, acks_late=True)
def write_attendance(self: Task, inbound_id: int) -> str:
    """Write a client's confirmation (or cancellation) to YClients; retried with backoff, then reported."""
    delay = attendance.write(inbound_id)
    if delay is not None:
        raise self.retry(countdown=delay)
    return "done"


@shared_task(name=Job.MESSAGING_REPLAN, acks_late=True)
def replan(company_id: int) -> int:
    """Plan every future booking of the salon again (after its settings changed)."""
    added = booking_changes.replan_company(company_id)
    db.session.commit()
    return added
