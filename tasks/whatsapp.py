"""WhatsApp session tasks: start, QR rendering, pairing codes, gateway events, reconnects, logout.

Every task takes ids and plain values, commits once at the end, and is safe to run twice
(timers carry the attempt and sequence number they were scheduled for and are ignored when stale).
"""

from __future__ import annotations

import logging
import time

from celery import Task, shared_task

from integrations.whatsapp import GatewayError, SingleSessionOnly
from models import db
from services.platform import parcels
from services.platform.jobs import Job, enqueue
from services.whatsapp import codes, gateway, held_events, receipts, reconcile, session_events, sessions

log = logging.getLogger(__name__)
EXPLAINED = sessions.EXPLANATIONS[sessions.SINGLE_SESSION_REASON]


def _gateway_call(company_id: int, action: str, session: str | None) -> bool:
    """Call the gateway outside any transaction; False (logged) when it failed."""
    if session is None:
        return True
    try:
        sessions.call_gateway(action, session, company_id)
        return True
    except SingleSessionOnly:
        if action == "start":
            raise  # the company is refused, not retried
        log.error("gateway %s for company %s: %s", action, company_id, EXPLAINED)
        return False
    except GatewayError as exc:
        log.warning("gateway %s failed for company %s: %s", action, company_id, exc)
        return False


@shared_task(name=Job.WHATSAPP_START_SESSION, bind=True, max_retries=sessions.RECONNECT_MAX_ATTEMPTS)
def start_session(self: Task, company_id: int) -> str:
    """Open a new login attempt and ask the gateway to start it (QR codes follow as events).

    A single-session gateway (WAHA Core) that another salon already uses refuses the company for good:
    no retries into ``gateway_unavailable``, a reason an operator reads in health and ``company show``.
    An unreachable gateway is retried with backoff for minutes (the status lists the outage meanwhile)."""
    try:
        only_session = gateway.gateway().describe().only_session
        session = sessions.begin_attempt(company_id, only_session)
        db.session.commit()
        if _gateway_call(company_id, "start", session):
            return "started" if session else "skipped"
    except SingleSessionOnly:
        db.session.rollback()
        sessions.refuse_single_session(company_id, None)
        db.session.commit()
        return "refused"
    except GatewayError as exc:  # describe() could not reach the gateway
        db.session.rollback()
        log.warning("gateway unreachable for company %s: %s", company_id, exc)
    if self.request.retries < self.max_retries:
        raise self.retry(countdown=sessions.reconnect_delay(self.request.retries + 1))
    sessions.gateway_failed(company_id, "gateway_unavailable")
    db.session.commit()
    return "failed"


@shared_task(name=Job.WHATSAPP_HANDLE_EVENT, ignore_result=True)
def handle_event(parcel_id: str) -> str:
    """Apply one gateway event (parked under ``parcel_id``): a session's status, a client's message."""
    event = parcels.fetch(parcel_id)
    if event is None:
        held_events.release(parcel_id)
        return "expired"
    outcome = session_events.handle_event(event)
    db.session.commit()
    held_events.release(parcel_id)
    return outcome


@shared_task(name=Job.WHATSAPP_EVENTS_SWEEP, ignore_result=True)
def events_sweep() -> int:
    """Beat: send again the gateway events whose task was lost, and a receipts run nobody scheduled."""
    overdue = held_events.overdue()
    for parcel_id in overdue:
        enqueue(Job.WHATSAPP_HANDLE_EVENT, parcel_id, after_commit=False)
    receipts.resume()
    return len(overdue)


@shared_task(name=Job.WHATSAPP_APPLY_RECEIPTS, acks_late=True, ignore_result=True)
def apply_receipts() -> int:
    """Apply the gateway receipts of our messages that came meanwhile, in one transaction a batch."""
    return receipts.apply_waiting(session_events.handle_event)


@shared_task(name=Job.WHATSAPP_RENDER_QR)
def render_qr(company_id: int, attempt: int, seq: int) -> bool:
    """Render QR ``seq`` of login ``attempt`` as a PNG data URI, cache it and publish it."""
    message = codes.render_qr(company_id, attempt, seq)
    db.session.commit()
    return message is not None


@shared_task(name=Job.WHATSAPP_PAIRING_CODE, bind=True, max_retries=200)
def pairing_code(self: Task, company_id: int, phone_parcel: str, nonce: str, deadline: float) -> str:
    """Request a pairing code for the parked phone number once the attempt is waiting for a login."""
    digits = parcels.fetch(phone_parcel)
    if digits is None:
        return "expired"
    outcome = codes.issue_pairing_code(company_id, digits, nonce, last_try=time.time() >= deadline)
    db.session.commit()
    if outcome == codes.NOT_READY:
        raise self.retry(countdown=0.25)
    return outcome


@shared_task(name=Job.WHATSAPP_RECONNECT)
def reconnect(company_id: int, attempt: int) -> str:
    """Restart the session for reconnect number ``attempt`` (stale reconnects do nothing)."""
    session = sessions.reconnect_target(company_id, attempt)
    db.session.commit()
    if session is None:
        return "stale"
    if _gateway_call(company_id, "restart", session):
        return "restarted"
    sessions.reconnect_failed(company_id)
    db.session.commit()
    return "failed"


def _call_or_retry(task: Task, company_id: int, action: str, session: str | None) -> bool:
    """Call the gateway; when that fails, retry ``task`` with backoff (False once its retries are spent)."""
    if _gateway_call(company_id, action, session):
        return True
    if task.request.retries < (task.max_retries or 0):
        raise task.retry(countdown=sessions.reconnect_delay(task.request.retries + 1))
    log.error("gateway %s for company %s failed %s times; giving up", action, company_id, task.request.retries + 1)
    return False


def _end_session(task: Task, company_id: int, reason: str, action: str) -> str:
    session = sessions.end_session(company_id, reason)
    db.session.commit()
    return reason if _call_or_retry(task, company_id, action, session) else "failed"


@shared_task(name=Job.WHATSAPP_LOGOUT, bind=True, max_retries=8)
def logout(self: Task, company_id: int) -> str:
    """Unlink the company's WhatsApp (uninstall): the gateway forgets the credentials; a gateway
    failure is retried with backoff (a linked phone left behind after an uninstall is a leak)."""
    return _end_session(self, company_id, "logged_out", "logout")


@shared_task(name=Job.WHATSAPP_STOP_SESSION, bind=True, max_retries=8)
def stop_session(self: Task, company_id: int) -> str:
    """Stop the company's session, keeping its credentials (freeze); gateway failures are retried."""
    return _end_session(self, company_id, "stopped", "stop")


@shared_task(name=Job.WHATSAPP_END_ATTEMPT, bind=True, max_retries=sessions.RECONNECT_MAX_ATTEMPTS)
def end_attempt(self: Task, company_id: int, attempt: int) -> str:
    """Have the gateway drop login ``attempt`` that we ended (QR budget spent, stuck starting)."""
    session = sessions.end_attempt_target(company_id, attempt)
    db.session.commit()
    if session is None:
        return "stale"
    return "ended" if _call_or_retry(self, company_id, "end_attempt", session) else "failed"


@shared_task(name=Job.WHATSAPP_CONFIRM_DISCONNECT)
def confirm_disconnect(company_id: int, reason: str, code: int | None) -> str:
    """The end of a failure's debounce window: a disconnect only if the session did not recover."""
    outcome = sessions.confirm_disconnect(company_id, reason, code)
    db.session.commit()
    return outcome


@shared_task(name=Job.WHATSAPP_RECONCILE)
def reconcile_session(company_id: int) -> str:
    """Ask the gateway for the real state of one company's session and repair our row."""
    session = reconcile.target(company_id)
    db.session.commit()
    if session is None:
        return "none"
    try:
        seen = reconcile.ask(session)
    except GatewayError as exc:
        log.warning("reconciling company %s: gateway unreachable: %s", company_id, exc)
        return "unreachable"
    outcome = reconcile.apply(company_id, seen)
    db.session.commit()
    return outcome


@shared_task(name=Job.WHATSAPP_RECONCILE_SWEEP, ignore_result=True)
def reconcile_sweep() -> int:
    """Beat: enqueue a reconciliation for every session whose state should have moved on by now."""
    due = reconcile.due()
    db.session.commit()
    for company_id in due:
        enqueue(Job.WHATSAPP_RECONCILE, company_id, after_commit=False)
    return len(due)


@shared_task(name=Job.WHATSAPP_SIMULATOR_ROTATE_QR, acks_late=True)
def simulator_rotate_qr(session: str, attempt: str, index: int) -> bool:
    """Simulator timer: the next QR of an attempt, or the end of the attempt (stale timers do nothing)."""
    return gateway.simulator_rotate(session, attempt, index)


@shared_task(name=Job.WHATSAPP_SIMULATOR_ACK, acks_late=True, ignore_result=True)
def simulator_ack() -> int:
    """Simulator timer: the clients' phones acknowledge the messages sent a moment ago."""
    return gateway.simulator_acks_due()
