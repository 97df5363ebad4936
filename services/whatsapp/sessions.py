"""The WhatsApp session state machine (DESIGN.md §5), shared by the web and the tasks.

``STOPPED → STARTING → SCAN_QR_CODE ⇄ (each rotation) → WORKING``; any → ``FAILED``. Gateway
events (WAHA's ``session.status`` shape, from any adapter or the simulator) drive it, as gateways
really report them: events of closed companies and of sessions we ended never bring a session back;
an event id or timestamp is used when present, never required; a failure of a linked session that
recovers within ``WHATSAPP_DISCONNECT_DEBOUNCE_SECONDS`` is no disconnect; a login attempt past its
QR budget is ended by us. Publishing and enqueueing happen after commit.
"""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import Any

from sqlalchemy import select

from models import Company, IntegrationStatus, SessionStatus, WhatsAppSession, db, utcnow
from services.access.webhook_secrets import gateway_events_url
from services.companies import company_events
from services.phones import from_whatsapp_id
from services.platform import runtime
from services.platform.backoff import backoff
from services.platform.errors import NotFound
from services.platform.jobs import Job, enqueue
from services.platform.transactions import add_unless_exists, on_commit
from services.whatsapp import qr
from services.whatsapp.gateway import SINGLE_SESSION_REASON, gateway, session_name

log = logging.getLogger(__name__)

# WhatsApp's disconnect codes (platform-facts.md).
TERMINAL_REASONS = {401: "logged_out", 402: "temporary_ban", 403: "forbidden", 406: "banned"}
REPLACED = 440
RESTART_REQUIRED = 515
RECONNECT_MAX_ATTEMPTS = 8
RECONNECT_BASE_SECONDS = 2.0
RECONNECT_CAP_SECONDS = 300.0
# WhatsApp's own QR timings (the simulator's are configurable).
QR_FIRST_TTL, QR_TTL, QR_COUNT = 60.0, 20.0, 6
LINKED = IntegrationStatus.LINKED
CLOSED = IntegrationStatus.CLOSED
ALIVE = (SessionStatus.STARTING, SessionStatus.SCAN_QR_CODE, SessionStatus.WORKING)
# Why we ended a session or an attempt ourselves: the gateway's later events for it are not obeyed.
ENDED_BY_US = ("logged_out", "stopped", "qr_timeout", "start_timeout", SINGLE_SESSION_REASON)
# What an operator reads for a failure reason (company show, health).
EXPLANATIONS = {
    SINGLE_SESSION_REASON: "the gateway serves one WhatsApp session and another salon holds it "
                           "(WAHA Core: use WAHA Plus or Evolution API for several salons)",
    "qr_timeout": "nobody scanned the QR code in time; the owner can start again",
    "start_timeout": "the gateway never got the session to a QR code (no route to WhatsApp?)",
    "gateway_unavailable": "the gateway could not be reached",
}


def qr_timings() -> tuple[float, float, int]:
    """(first QR lifetime, later lifetime, QRs per attempt) of the active gateway."""
    settings = runtime.settings()
    if settings.whatsapp_gateway == "simulator":
        return settings.simulator_qr_first_ttl, settings.simulator_qr_ttl, settings.simulator_qr_count
    return QR_FIRST_TTL, QR_TTL, QR_COUNT


def reconnect_delay(attempt: int) -> float:
    """The delay before reconnect (or gateway call retry) number ``attempt``: 1–2 s, 2–4 s … up to 300 s."""
    return backoff(attempt, RECONNECT_BASE_SECONDS, RECONNECT_CAP_SECONDS)


def get_company(company_id: int) -> Company:
    """The company, or NotFound("Компания не найдена")."""
    company = db.session.get(Company, company_id)
    if company is None:
        raise NotFound("Компания не найдена")
    return company


def session_for(company_id: int, lock: bool = False) -> WhatsAppSession:
    """The company's session row, created STOPPED on first use (row-locked when ``lock``)."""
    query = select(WhatsAppSession).where(WhatsAppSession.company_id == company_id)
    if lock:
        query = query.with_for_update()
    found = db.session.scalars(query).first()
    if found is not None:
        return found
    row = WhatsAppSession(company_id=company_id, gateway_session=session_name(company_id),
                          status=SessionStatus.STOPPED, attempt=0, qr_count=0, reconnect_attempts=0)
    if add_unless_exists(row):
        return row
    return db.session.scalars(query).one()


def snapshot(company_id: int) -> dict[str, Any]:
    """The state a connect page needs right now (the ``status`` event)."""
    company = get_company(company_id)
    row = db.session.scalars(select(WhatsAppSession).where(WhatsAppSession.company_id == company_id)).first()
    return _snapshot(company, row)


def _snapshot(company: Company, row: WhatsAppSession | None) -> dict[str, Any]:
    return {
        "companyId": company.id,
        "integration_status": company.integration_status,
        "whatsapp_connected": company.whatsapp_connected,
        "whatsapp_phone": company.whatsapp_phone,
        "session_status": row.status if row else SessionStatus.STOPPED,
        "reason": row.failure_reason if row else None,
        "qr_count": row.qr_count if row else 0,
        "qr_limit": qr_timings()[2],
    }


def _publish(company_id: int, event: str, data: dict[str, Any]) -> None:
    company_events.publish_after_commit(company_id, event, data)


def request_start(company_id: int) -> bool:
    """Begin a login attempt unless one is live; the start task is enqueued after commit."""
    company = get_company(company_id)
    row = session_for(company_id, lock=True)
    if company.integration_status in CLOSED or row.status == SessionStatus.WORKING:
        return False
    first_ttl = qr_timings()[0]
    fresh = row.updated_at is not None and utcnow() - row.updated_at < timedelta(seconds=first_ttl + 30)
    if row.status in (SessionStatus.STARTING, SessionStatus.SCAN_QR_CODE) and fresh:
        return False
    # One start per company at a time, across processes.
    if not runtime.redis().set(runtime.settings().key("whatsapp", "starting", company_id), 1, nx=True, ex=5):
        return False
    row.status, row.failure_reason = SessionStatus.STARTING, None
    row.updated_at = utcnow()
    if company.integration_status not in LINKED:
        company.integration_status = IntegrationStatus.CONNECTING
    enqueue(Job.WHATSAPP_START_SESSION, company_id)
    _publish(company_id, "status", _snapshot(company, row))
    return True


def holder_of(session: str, company_id: int) -> int | None:
    """Another open company using (or linked through) the gateway session ``session``, if any."""
    query = (select(WhatsAppSession.company_id).join(Company, Company.id == WhatsAppSession.company_id)
             .where(WhatsAppSession.gateway_session == session, WhatsAppSession.company_id != company_id,
                    Company.integration_status.not_in(CLOSED),
                    (WhatsAppSession.status.in_(ALIVE)) | Company.integration_status.in_(LINKED))
             .order_by(WhatsAppSession.company_id))
    return db.session.scalars(query).first()


def begin_attempt(company_id: int, only_session: str | None = None) -> str | None:
    """Open a new login attempt in the database; the gateway is called after commit (None: nothing to do).

    ``only_session`` is the one session a single-session gateway (WAHA Core) serves: a company gets it
    unless another open salon holds it, and is then refused with a reason an operator can read."""
    company = get_company(company_id)
    row = session_for(company_id, lock=True)
    if company.integration_status in CLOSED or row.status == SessionStatus.WORKING:
        return None
    if only_session is not None:
        holder = holder_of(only_session, company_id)
        if holder is not None:
            refuse_single_session(company_id, holder)
            return None
    row.gateway_session = only_session or session_name(company_id)
    row.attempt += 1
    row.status, row.qr_count, row.reconnect_attempts = SessionStatus.STARTING, 0, 0
    row.failure_reason, row.pairing_phone, row.qr_expires_at = None, None, None
    if company.integration_status not in LINKED:
        company.integration_status = IntegrationStatus.CONNECTING
    on_commit(lambda: qr.forget(company_id))
    return row.gateway_session


def refuse_single_session(company_id: int, holder: int | None) -> None:
    """The gateway serves one session and cannot serve this company: FAILED, no retry, an audit line."""
    row = session_for(company_id, lock=True)
    company = get_company(company_id)
    already = (row.status, row.failure_reason) == (SessionStatus.FAILED, SINGLE_SESSION_REASON)
    row.status, row.failure_reason = SessionStatus.FAILED, SINGLE_SESSION_REASON
    log.error("company %s cannot get a WhatsApp session: %s (held by company %s)", company_id,
              EXPLANATIONS[SINGLE_SESSION_REASON], holder)
    if not already:
        company_events.record(company_id, "gateway_refused", reason=SINGLE_SESSION_REASON, holder=holder)
    _publish(company_id, "whatsapp.disconnected", {"companyId": company_id, "reason": SINGLE_SESSION_REASON})
    _publish(company_id, "status", _snapshot(company, row))


def gateway_failed(company_id: int, reason: str) -> None:
    """The gateway could not be reached for a start or reconnect: the attempt ends FAILED."""
    row = session_for(company_id, lock=True)
    company = get_company(company_id)
    row.status, row.failure_reason = SessionStatus.FAILED, reason
    _publish(company_id, "whatsapp.disconnected", {"companyId": company_id, "reason": reason})
    _publish(company_id, "status", _snapshot(company, row))


def apply_status(company: Company, row: WhatsAppSession, status: str, code: int | None = None,
                 reason: str | None = None, phone: str | None = None) -> str:
    """Move the session to what the gateway reports (a status, maybe a disconnect code) and publish it."""
    company_id = company.id
    if code in TERMINAL_REASONS:
        outcome = _failed(company, row, TERMINAL_REASONS[code], code)
    elif code == REPLACED:
        outcome = _failed(company, row, "replaced", code, status=SessionStatus.STOPPED)
    elif code == RESTART_REQUIRED:
        row.status, row.last_disconnect_code = SessionStatus.STARTING, code
        _enqueue_reconnect(company_id, row.reconnect_attempts, 0.0)
        outcome = "restarting"
    elif code is not None:
        outcome = _transient(company, row, code)
    elif status == SessionStatus.SCAN_QR_CODE:
        outcome = _qr_changed(company, row)
    elif status == SessionStatus.WORKING:
        outcome = _working(company, row, phone)
    elif status == SessionStatus.FAILED:
        outcome = _failed(company, row, reason or "failed", None)
    elif status in (SessionStatus.STOPPED, SessionStatus.STARTING):
        # WAHA re-sends an identical STARTING on every reconnect try; Evolution's "connecting" and first QR
        # arrive together and may be applied in either order, and a scan's restart is "connecting" too: a
        # session showing codes does not go back to STARTING (begin_attempt counts codes from zero).
        if row.status == status or (status == SessionStatus.STARTING and row.status == SessionStatus.SCAN_QR_CODE):
            return "unchanged"
        row.status = status
        outcome = status.lower()
    else:
        return "ignored"
    _publish(company_id, "status", _snapshot(company, row))
    return outcome


def end_again(company: Company) -> None:
    """A closed company's session is alive at the gateway: end it again (at most once a minute)."""
    if runtime.redis().set(runtime.settings().key("whatsapp", "end_again", company.id), 1, nx=True, ex=60):
        job = Job.WHATSAPP_LOGOUT if company.integration_status == IntegrationStatus.UNINSTALLED \
            else Job.WHATSAPP_STOP_SESSION
        enqueue(job, company.id)


def _enqueue_reconnect(company_id: int, attempt: int, countdown: float) -> None:
    enqueue(Job.WHATSAPP_RECONNECT, company_id, attempt, countdown=countdown)


def _qr_changed(company: Company, row: WhatsAppSession) -> str:
    if row.qr_count >= qr_timings()[2]:
        # The attempt's QR budget is spent; some engines rotate forever, so the attempt is ended here.
        return end_attempt(company, row, "qr_timeout")
    row.status = SessionStatus.SCAN_QR_CODE
    row.qr_count += 1
    row.last_qr_at = utcnow()
    company_id, attempt, seq = row.company_id, row.attempt, row.qr_count
    enqueue(Job.WHATSAPP_RENDER_QR, company_id, attempt, seq)
    return "qr"


def _working(company: Company, row: WhatsAppSession, digits: str | None) -> str:
    was_working = row.status == SessionStatus.WORKING
    row.status, row.failure_reason, row.reconnect_attempts = SessionStatus.WORKING, None, 0
    row.me_phone = from_whatsapp_id(digits) or row.me_phone
    company_id = company.id
    on_commit(lambda: qr.forget(company_id))
    if company.integration_status in CLOSED:
        log.warning("company %s is %s; its WhatsApp session is not used", company_id, company.integration_status)
        return "closed"
    company.whatsapp_phone = row.me_phone or company.whatsapp_phone
    if company.integration_status not in LINKED:
        company.integration_status = IntegrationStatus.CONNECTED
        company.whatsapp_connected_at = utcnow()
        company.disconnected_at = None
        company_events.record(company_id, "connected", phone=company.whatsapp_phone)
        enqueue(Job.YCLIENTS_SEND_CALLBACK, company_id)
    elif was_working:
        return "working"
    _publish(company_id, "whatsapp.connected", {"phone": company.whatsapp_phone, "companyId": company_id})
    return "connected"


def end_attempt(company: Company, row: WhatsAppSession, reason: str) -> str:
    """End a login attempt nobody finished: FAILED here, and the gateway told to drop it after commit."""
    outcome = _failed(company, row, reason, None)
    enqueue_end_attempt(company.id, row.attempt)
    return outcome


def end_attempt_now(company: Company, row: WhatsAppSession, reason: str) -> str:
    """``end_attempt`` and publish the new state (for callers outside an event)."""
    outcome = end_attempt(company, row, reason)
    _publish(company.id, "status", _snapshot(company, row))
    return outcome


def enqueue_end_attempt(company_id: int, attempt: int) -> None:
    """Have the gateway drop login ``attempt`` (after commit)."""
    enqueue(Job.WHATSAPP_END_ATTEMPT, company_id, attempt)


def _failed(company: Company, row: WhatsAppSession, reason: str, code: int | None,
            status: str = SessionStatus.FAILED) -> str:
    row.status, row.failure_reason, row.last_disconnect_code = status, reason, code
    row.qr_expires_at = None
    company_id = company.id
    on_commit(lambda: qr.forget(company_id))
    if company.integration_status in LINKED and code not in TERMINAL_REASONS and code != REPLACED:
        # Gateways report FAILED (WAHA) or a reconnect for a drop that often heals in seconds: it is a
        # disconnect only if the session is still down when the debounce window ends.
        _confirm_later(company_id, reason, code)
        return "failing"
    _disconnect(company, reason, code)
    return reason


def _confirm_later(company_id: int, reason: str, code: int | None) -> None:
    delay = runtime.settings().whatsapp_disconnect_debounce_seconds
    enqueue(Job.WHATSAPP_CONFIRM_DISCONNECT, company_id, reason, code, countdown=delay)


def _disconnect(company: Company, reason: str, code: int | None) -> None:
    company_id = company.id
    if company.integration_status in LINKED:
        company.integration_status = IntegrationStatus.DISCONNECTED
        company.disconnected_at = utcnow()
        company_events.record(company_id, "disconnected", reason=reason, code=code)
    _publish(company_id, "whatsapp.disconnected", {"companyId": company_id, "reason": reason})


def confirm_disconnect(company_id: int, reason: str, code: int | None) -> str:
    """The debounce window of a failure ended: a disconnect if the session is still not WORKING."""
    company = get_company(company_id)
    row = session_for(company_id, lock=True)
    if row.status == SessionStatus.WORKING or company.integration_status not in LINKED:
        return "recovered" if row.status == SessionStatus.WORKING else "not_linked"
    _disconnect(company, reason, code)
    _publish(company_id, "status", _snapshot(company, row))
    return "disconnected"


def _transient(company: Company, row: WhatsAppSession, code: int) -> str:
    row.last_disconnect_code = code
    row.reconnect_attempts += 1
    if row.reconnect_attempts > RECONNECT_MAX_ATTEMPTS:
        return _failed(company, row, "reconnect_failed", code)
    row.status = SessionStatus.STARTING
    _enqueue_reconnect(company.id, row.reconnect_attempts, reconnect_delay(row.reconnect_attempts))
    if company.integration_status in LINKED:
        _confirm_later(company.id, "connection_lost", code)
    else:
        _publish(company.id, "whatsapp.disconnected", {"companyId": company.id, "reason": "connection_lost"})
    return "reconnecting"


def reconnect_target(company_id: int, attempt: int) -> str | None:
    """The session to restart for reconnect number ``attempt``; None when that reconnect is stale."""
    row = session_for(company_id)
    if row.status != SessionStatus.STARTING or row.reconnect_attempts != attempt:
        return None
    return row.gateway_session


def reconnect_failed(company_id: int) -> None:
    """A restart call itself failed: count it as one more transient disconnect."""
    company = get_company(company_id)
    row = session_for(company_id, lock=True)
    _transient(company, row, 503)
    _publish(company_id, "status", _snapshot(company, row))


def end_session(company_id: int, reason: str) -> str | None:
    """Mark the session STOPPED before the gateway logs out / stops it; None when there is none.

    Pages hear ``whatsapp.disconnected`` once: a retried logout or stop finds the session already
    stopped for the same reason and publishes nothing."""
    if db.session.get(Company, company_id) is None:
        return None
    row = session_for(company_id, lock=True)
    changed = (row.status, row.failure_reason) != (SessionStatus.STOPPED, reason)
    row.status, row.failure_reason = SessionStatus.STOPPED, reason
    on_commit(lambda: qr.forget(company_id))
    # The start guard of the attempt just ended must not hold back the next one (a relink right after).
    starting = runtime.settings().key("whatsapp", "starting", company_id)
    on_commit(lambda: runtime.redis().delete(starting))
    if changed:
        _publish(company_id, "whatsapp.disconnected", {"companyId": company_id, "reason": reason})
    return row.gateway_session


def call_gateway(action: str, session: str, company_id: int) -> None:
    """``start``, ``restart``, ``logout``, ``stop`` or ``end_attempt`` on the gateway (raises GatewayError);
    a started session posts its events to the company's own secret URL."""
    current = gateway()
    if action in ("start", "restart"):
        getattr(current, action)(session, gateway_events_url(company_id), runtime.settings().waha_webhook_hmac_key)
    else:
        getattr(current, action)(session)


def end_attempt_target(company_id: int, attempt: int) -> str | None:
    """The session whose abandoned login ``attempt`` the gateway must drop; None when it moved on."""
    row = session_for(company_id)
    if row.attempt != attempt or row.status != SessionStatus.FAILED or row.failure_reason not in ENDED_BY_US:
        return None
    return row.gateway_session

