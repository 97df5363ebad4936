"""QR and pairing codes for a company: rendering them (tasks) and handing them out (web, sockets)."""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable
from datetime import timedelta
from typing import Any

from integrations.whatsapp import GatewayError
from models import SessionStatus, WhatsAppSession, db, utcnow
from services.companies import company_events
from services.phones import parse_phone, whatsapp_digits
from services.platform import parcels, runtime
from services.platform.errors import Conflict, ServiceError, Unavailable
from services.platform.jobs import Job, enqueue
from services.platform.metrics import PAIRING_CODES_ISSUED, QR_CODES_ISSUED
from services.platform.transactions import on_commit
from services.whatsapp import qr
from services.whatsapp.gateway import gateway
from services.whatsapp.sessions import get_company, qr_timings, request_start, session_for

log = logging.getLogger(__name__)
QR_FAILED = "Не удалось сгенерировать QR-код"
PAIRING_FAILED = "Не удалось получить код подключения"
ALREADY_CONNECTED = "WhatsApp уже подключен"


class QrUnavailable(ServiceError):
    """No QR arrived in time (the reference answers 500 with its message)."""


def _wait(probe: Callable[[], Any], timeout: float, interval: float = 0.1) -> Any:
    """Poll ``probe`` (Redis reads only: no database session is held) until truthy or ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        found = probe()
        if found or time.monotonic() >= deadline:
            return found
        time.sleep(interval)


def _release_db() -> None:
    """Commit the start request and return the connection before waiting on the gateway."""
    db.session.commit()
    db.session.remove()


def connected_answer(company_id: int) -> dict[str, Any] | None:
    """``{"connected": true, "whatsapp_phone"}`` when WhatsApp is already linked, else None."""
    company = get_company(company_id)
    if not company.whatsapp_connected:
        return None
    return {"connected": True, "whatsapp_phone": company.whatsapp_phone, "message": ALREADY_CONNECTED}


def current_qr(company_id: int, start: bool = True) -> dict[str, Any] | None:
    """The live QR ``{"qr", "expires_in"}``; without one, start an attempt (after commit) and return None."""
    cached = qr.cached_qr(company_id)
    if cached:
        return {"qr": cached["qr"], "expires_in": cached["expires_in"]}
    if start:
        request_start(company_id)
    return None


def obtain_qr(company_id: int) -> dict[str, Any]:
    """The answer of ``GET /qr``: the live QR, waiting up to ``QR_WAIT_SECONDS`` for a new one."""
    linked = connected_answer(company_id)
    if linked:
        return linked
    found = current_qr(company_id)
    if found:
        return found
    _release_db()
    cached = _wait(lambda: qr.cached_qr(company_id), runtime.settings().qr_wait_seconds)
    if not cached:
        raise QrUnavailable(QR_FAILED)
    return {"qr": cached["qr"], "expires_in": cached["expires_in"]}


def render_qr(company_id: int, attempt: int, seq: int) -> dict[str, Any] | None:
    """Render QR ``seq`` of ``attempt`` from the gateway, cache it and publish ``qr`` (None when stale)."""
    row = session_for(company_id)
    if row.attempt != attempt or row.qr_count != seq or row.status != SessionStatus.SCAN_QR_CODE:
        return None
    code = gateway().qr(row.gateway_session)
    if code is None:
        return None
    first_ttl, ttl, _count = qr_timings()
    if code.expires_in is not None:
        expires_in = code.expires_in
    else:
        elapsed = (utcnow() - row.last_qr_at).total_seconds() if row.last_qr_at else 0.0
        expires_in = max(1.0, (first_ttl if seq == 1 else ttl) - elapsed)
    data_uri = qr.render_data_uri(code.value)
    row.qr_expires_at = utcnow() + timedelta(seconds=expires_in)
    if seq == 1:
        company_events.record(company_id, "qr_issued", attempt=attempt)
    message = {"qr": data_uri, "companyId": company_id, "expires_in": round(expires_in)}
    bus = runtime.bus()

    def publish() -> None:
        qr.cache_qr(company_id, data_uri, expires_in, attempt, seq)
        bus.emit(company_id, "qr", message)
        QR_CODES_ISSUED.inc()

    on_commit(publish)
    return message


def _attempt_left(row: WhatsAppSession) -> float:
    ends = gateway().attempt_ends_in(row.gateway_session)
    if ends is not None:
        return ends
    first_ttl, ttl, count = qr_timings()
    current = (row.qr_expires_at - utcnow()).total_seconds() if row.qr_expires_at else first_ttl
    return max(1.0, current + max(0, count - row.qr_count) * ttl)


NOT_READY = "not_ready"


def issue_pairing_code(company_id: int, digits: str, nonce: str, last_try: bool = True) -> str:
    """Ask the gateway for a pairing code, cache it for ``nonce`` and publish ``pairingCode``.

    Returns ``issued``, ``failed``, or ``not_ready`` while the attempt is still starting (the task
    then tries again shortly, until ``last_try``).
    """
    row = session_for(company_id, lock=True)
    if row.status == SessionStatus.STARTING and not last_try:
        return NOT_READY
    bus = runtime.bus()
    if row.status != SessionStatus.SCAN_QR_CODE:
        qr.cache_pairing(company_id, nonce, 30, error=PAIRING_FAILED)
        return "failed"
    try:
        raw = gateway().request_pairing_code(row.gateway_session, digits)
    except GatewayError as exc:
        log.warning("pairing code refused for company %s: %s", company_id, exc)
        qr.cache_pairing(company_id, nonce, 30, error=PAIRING_FAILED)
        bus.emit(company_id, "error", {"message": PAIRING_FAILED})
        return "failed"
    expires_in = _attempt_left(row)
    row.pairing_phone = "+" + digits
    code = qr.format_pairing_code(raw)
    message = {"code": code, "expires_in": round(expires_in)}

    def publish() -> None:
        qr.cache_pairing(company_id, nonce, expires_in, code=code)
        bus.emit(company_id, "pairingCode", message)
        PAIRING_CODES_ISSUED.inc()

    on_commit(publish)
    return "issued"


def request_pairing_code(company_id: int, phone: object) -> str:
    """Validate the phone and enqueue the pairing-code task; returns the request's nonce."""
    digits = whatsapp_digits(parse_phone(phone))
    if connected_answer(company_id):
        raise Conflict(ALREADY_CONNECTED)
    request_start(company_id)
    nonce = uuid.uuid4().hex
    wait = runtime.settings().qr_wait_seconds
    deadline = time.time() + wait
    phone_parcel = parcels.park(digits)  # the phone number stays out of the task's arguments
    enqueue(Job.WHATSAPP_PAIRING_CODE, company_id, phone_parcel, nonce, deadline)
    return nonce


def obtain_pairing_code(company_id: int, phone: object) -> dict[str, Any]:
    """The answer of ``POST /pairing-code``: ``{"code": "XXXX-XXXX", "expires_in"}``."""
    nonce = request_pairing_code(company_id, phone)
    _release_db()
    timeout = runtime.settings().qr_wait_seconds * 2 + 2
    found = _wait(lambda: (p := qr.cached_pairing(company_id)) and p.get("nonce") == nonce and p, timeout)
    if not found or "code" not in found:
        raise Unavailable(PAIRING_FAILED)
    return {"code": found["code"], "expires_in": found["expires_in"]}
