"""The activation callback to YClients (DESIGN.md §6): one attempt at a time, retried by the task.

Each attempt runs in three steps so that no database transaction is open during the HTTP call:
prepare (commit), call YClients, record the outcome (commit). A Redis lock per company keeps two
tasks (the automatic one after WhatsApp links, an explicit resend) from sending at once. An open
callback keeps when its next attempt is due; ``resend_lost`` (beat) sends again the callbacks whose
task message was lost with a killed worker — an open one a while past that moment, or none at all for
a salon whose WhatsApp linked a while ago.

The API key sent to YClients is minted per callback row: it is derived from ``SECRET_KEY`` and the
row, stored only as its hash, and replaces the company's previous "yclients" key. Every retry of
the same row therefore sends the same key, so a key YClients kept from an attempt whose answer we
lost (a timeout) stays valid.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import logging
import random
import time
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from redis.exceptions import LockError
from sqlalchemy import select

from integrations.yclients import Outcome, PartnerResponse, YClientsPartnerClient
from models import ApiKey, Callback, CallbackStatus, Company, IntegrationStatus, db, utcnow
from services.access import api_keys
from services.access.api_keys import Principal
from services.access.webhook_secrets import webhook_url
from services.companies import company_events
from services.companies.queries import get_company, status_payload
from services.platform import outages, runtime
from services.platform.backoff import backoff
from services.platform.dates import iso
from services.platform.errors import Conflict, NotFound, Unavailable
from services.platform.jobs import LOST_AFTER_SECONDS, Job, enqueue
from services.platform.metrics import CALLBACKS

log = logging.getLogger(__name__)

KEY_LABEL = "yclients"
NOT_CONFIGURED_REASON = "YCLIENTS_PARTNER_TOKEN или YCLIENTS_APPLICATION_ID не заданы"
OPEN_STATUSES = (CallbackStatus.PENDING, CallbackStatus.RETRYING)
# A callback may be sent once WhatsApp is linked; the automatic one only until YClients accepted.
SENDABLE = IntegrationStatus.LINKED
AUTOMATIC = (IntegrationStatus.CONNECTED, IntegrationStatus.ACTIVATION_FAILED)
LOCK_BUSY_DELAY = 1.0


def is_configured() -> bool:
    """True when the partner token and our application id are set."""
    settings = runtime.settings()
    return bool(settings.yclients_partner_token and settings.yclients_application_id)


def enqueue_callback(company_id: int) -> None:
    """Queue ``yclients.send_callback`` once the current transaction commits."""
    enqueue(Job.YCLIENTS_SEND_CALLBACK, company_id)


def resend_callback(company_id: int) -> Callback:
    """Send the callback now even if YClients already accepted one (endpoint, admin CLI); caller commits."""
    if not is_configured():
        raise Unavailable("Интеграция с YClients не настроена: нужны YCLIENTS_PARTNER_TOKEN и YCLIENTS_APPLICATION_ID")
    company = get_company(company_id)
    if company.integration_status not in SENDABLE:
        raise Conflict(
            "WhatsApp не подключен: callback отправляется после подключения",
            integration_status=company.integration_status,
        )
    row = _open_callback(company_id)
    if row is None:
        row = Callback(company_id=company_id, status=CallbackStatus.PENDING)
        db.session.add(row)
        db.session.flush()
    row.next_attempt_at = utcnow()
    enqueue_callback(company_id)
    return row


def resend_lost() -> list[int]:
    """The companies whose callback task was lost, each sent again (after the caller's commit): an open
    callback ``LOST_AFTER_SECONDS`` past its due moment, or a salon linked that long ago with no callback
    since (one that ended dead, say for a revoked webhook URL, is not made again and again)."""
    if not is_configured():
        return []
    cutoff = utcnow() - timedelta(seconds=LOST_AFTER_SECONDS)
    overdue = db.session.scalars(select(Callback).where(
        Callback.status.in_(OPEN_STATUSES), Callback.next_attempt_at.is_(None) | (Callback.next_attempt_at <= cutoff))
        .with_for_update(skip_locked=True)).all()
    for row in overdue:
        row.next_attempt_at = utcnow()
    since_linked = select(Callback.id).where(Callback.company_id == Company.id,
                                             Callback.created_at >= Company.whatsapp_connected_at)
    never_sent = db.session.scalars(select(Company.id).where(
        Company.integration_status == IntegrationStatus.CONNECTED, Company.whatsapp_connected_at <= cutoff,
        ~since_linked.exists())).all()
    companies = sorted({row.company_id for row in overdue} | set(never_sent))
    for company_id in companies:
        log.warning("the activation callback of company %s is sent again (its task was lost)", company_id)
        enqueue_callback(company_id)
    return companies


def wait_for_final(callback_id: int, timeout: float, interval: float = 0.1) -> Callback:
    """Re-read the callback until it is final or ``timeout`` passed (no transaction held between reads)."""
    deadline = time.monotonic() + timeout
    while True:
        row = db.session.get(Callback, callback_id, populate_existing=True)
        assert row is not None
        db.session.commit()
        if row.status in CallbackStatus.FINAL or time.monotonic() >= deadline:
            return row
        time.sleep(interval)


def describe(row: Callback) -> dict[str, Any]:
    """A callback's state for the API."""
    return {
        "callback_id": row.id,
        "company_id": row.company_id,
        "status": row.status,
        "attempts": row.attempts,
        "http_status": row.http_status,
        "error": row.error,
        "callback_sent_at": iso(row.sent_at),
        "created_at": iso(row.created_at),
        "updated_at": iso(row.updated_at),
    }


def callback_state(callback_id: int, principal: Principal) -> dict[str, Any]:
    """One callback's state for the company it belongs to, or the admin; another company's callback is
    "not found" like a missing one, so ids cannot be probed for existence."""
    row = db.session.get(Callback, callback_id)
    if row is None or not principal.may_act_for(row.company_id):
        raise NotFound("Callback не найден")
    return describe(row)


def _open_callback(company_id: int) -> Callback | None:
    query = (
        select(Callback)
        .where(Callback.company_id == company_id, Callback.status.in_(OPEN_STATUSES))
        .order_by(Callback.id)
        .limit(1)
    )
    return db.session.scalar(query)


@dataclass(frozen=True)
class _Prepared:
    callback_id: int
    salon_id: int
    api_key: str
    webhook_url: str


def _callback_key(row: Callback) -> str:
    message = f"callback-key:{row.company_id}:{row.id}:{int(row.created_at.timestamp())}".encode()
    digest = hmac.new(runtime.settings().secret_key.encode(), message, hashlib.sha256).digest()
    return "sk_" + base64.urlsafe_b64encode(digest).decode().rstrip("=")


def _install_key(row: Callback) -> str:
    plaintext = _callback_key(row)
    key_hash = api_keys.hash_key(plaintext)
    if db.session.scalar(select(ApiKey.id).where(ApiKey.key_hash == key_hash)) is None:
        api_keys.revoke_keys(row.company_id, label=KEY_LABEL)
        db.session.add(
            ApiKey(company_id=row.company_id, prefix=plaintext[: api_keys.PREFIX_LENGTH], key_hash=key_hash,
                   label=KEY_LABEL)
        )
        company_events.record(row.company_id, "key_rotated", label=KEY_LABEL, callback_id=row.id)
    return plaintext


def _prepare(company_id: int) -> _Prepared | None:
    company = db.session.get(Company, company_id)
    if company is None:
        return None
    row = _open_callback(company_id)
    if row is None:
        if company.integration_status not in AUTOMATIC:
            db.session.commit()
            return None  # already active, or WhatsApp not linked: nothing to do
        row = Callback(company_id=company_id, status=CallbackStatus.PENDING)
        db.session.add(row)
        db.session.flush()
    url = webhook_url(company)
    if company.integration_status not in SENDABLE or url is None:
        row.status, row.next_attempt_at = CallbackStatus.DEAD, None
        row.error = f"Компания в статусе {company.integration_status}: callback не отправлен"
        db.session.commit()
        CALLBACKS.labels(outcome=CallbackStatus.DEAD).inc()
        return None
    prepared = _Prepared(row.id, company.salon_id, _install_key(row), url)
    row.attempts += 1
    row.next_attempt_at = utcnow() + timedelta(seconds=runtime.settings().yclients_timeout_seconds)
    db.session.commit()
    return prepared


def retry_delay(attempt: int) -> float:
    """The delay before the callback's next attempt."""
    settings = runtime.settings()
    return backoff(attempt, settings.callback_retry_base_seconds, settings.callback_retry_max_seconds)


def _set_company_outcome(company: Company, row: Callback, kind: str, status: str) -> None:
    company.integration_status = status
    if status == IntegrationStatus.ACTIVE:
        company.activated_at = row.sent_at
    company_events.record(company.id, kind, callback_id=row.id, http_status=row.http_status, error=row.error)
    company_events.publish_after_commit(company.id, "status", status_payload(company))


def _record(callback_id: int, response: PartnerResponse) -> float | None:
    row = db.session.get(Callback, callback_id)
    assert row is not None
    company = get_company(row.company_id)
    row.http_status = response.http_status
    row.response_excerpt = response.excerpt or None
    if response.outcome is Outcome.RETRY:
        outages.failed(outages.YCLIENTS, response.message)
    else:
        outages.recovered(outages.YCLIENTS)
    delay = None
    if response.outcome is Outcome.ACCEPTED:
        row.status, row.sent_at, row.error = CallbackStatus.SENT, utcnow(), None
        _set_company_outcome(company, row, "activated", IntegrationStatus.ACTIVE)
        enqueue(Job.YCLIENTS_FETCH_COMPANY, company.id)  # its time zone, for reminders
    else:
        row.error = response.message
        if response.outcome is Outcome.RETRY and row.attempts < runtime.settings().callback_max_attempts:
            row.status = CallbackStatus.RETRYING
            delay = retry_delay(row.attempts)
            row.next_attempt_at = utcnow() + timedelta(seconds=delay)
        else:
            row.status = CallbackStatus.REJECTED if response.outcome is Outcome.REJECTED else CallbackStatus.DEAD
            _set_company_outcome(company, row, "activation_failed", IntegrationStatus.ACTIVATION_FAILED)
    if delay is None:
        row.next_attempt_at = None
    db.session.commit()
    CALLBACKS.labels(outcome=row.status).inc()
    log.info("callback %s for company %s: %s (HTTP %s)", row.id, row.company_id, row.status, row.http_status)
    return delay


def attempt_callback(company_id: int) -> float | None:
    """One delivery attempt for the company; the delay before the next one, or None when done."""
    settings = runtime.settings()
    if not is_configured():
        log.warning("callback for company %s skipped: YClients partner token or application id not set", company_id)
        if db.session.get(Company, company_id) is not None:
            # Visible in the company's events (and `company show`), not only in the worker's log.
            company_events.record(company_id, "callback_skipped", reason=NOT_CONFIGURED_REASON)
            db.session.commit()
        return None
    lock = runtime.redis().lock(
        settings.key("lock", "callback", company_id), timeout=settings.yclients_timeout_seconds + 60
    )
    if not lock.acquire(blocking=False):
        return LOCK_BUSY_DELAY + random.uniform(0, LOCK_BUSY_DELAY)
    try:
        prepared = _prepare(company_id)
        if prepared is None:
            return None
        client = YClientsPartnerClient(
            settings.yclients_api_url, settings.yclients_partner_token or "", settings.yclients_timeout_seconds
        )
        response = client.send_callback(
            prepared.salon_id, settings.yclients_application_id or 0, prepared.api_key, [prepared.webhook_url]
        )
        return _record(prepared.callback_id, response)
    finally:
        try:
            lock.release()
        except LockError:
            log.warning("callback lock for company %s expired before release", company_id)
