"""The marketplace lifecycle webhook: ``uninstall`` and ``freeze`` of one salon's installation.

YClients posts ``{"salon_id", "application_id", "event", "partner_token"}``; the partner token in
the body is the only proof, compared in constant time. Authentic deliveries are stored in the inbox
(without the token) and applied by ``webhooks.process``.

Dedupe is per delivery, not per (event, salon) forever: the key is a hash of the body (token
excluded), the UTC day it arrived and the salon's current installation (its latest registration or
reinstall). Retries of one delivery have one effect; a real second uninstall or freeze is applied
again, whether it comes on another day or after a reinstall on the same day. Both effects are
idempotent, so a retry that crosses midnight is harmless.
"""

from __future__ import annotations

import hmac
import json
import logging
from typing import Any

from sqlalchemy import func, select

from models import Company, CompanyEvent, EventSource, IntegrationStatus, WebhookEvent, db, utcnow
from services.access import api_keys, webhook_secrets
from services.companies import company_events
from services.platform import runtime
from services.platform.ids import MAX_BIG_ID, as_id
from services.platform.jobs import Job, enqueue
from services.webhooks.ingest import Received, rejected_values, store
from services.webhooks.parsing import Malformed, digest, excerpt, load_json_object

log = logging.getLogger(__name__)

EVENT_TYPES = ("lifecycle.uninstall", "lifecycle.freeze")
INVALID_TOKEN = "invalid partner token"
SESSION_TASK = {"lifecycle.uninstall": Job.WHATSAPP_LOGOUT, "lifecycle.freeze": Job.WHATSAPP_STOP_SESSION}
# Company events that start an installation (services.companies.registration records them).
INSTALLATION_KINDS = ("registered", "reinstalled")


class Unprocessable(ValueError):
    """The lifecycle event names no company we can act on."""


def partner_token_matches(presented: Any) -> bool:
    """Constant-time check against ``YCLIENTS_PARTNER_TOKEN``; always False when it is not configured."""
    expected = runtime.settings().yclients_partner_token
    if not expected or not isinstance(presented, str) or not presented:
        return False
    return hmac.compare_digest(expected.encode(), presented.encode())


def receive(body: bytes | None, request_id: str | None = None) -> Received:
    """Authenticate and store one lifecycle delivery (``rejected`` with a reason when it is not usable).

    A rejected delivery is kept as an excerpt of its text (without the partner token) and a reason:
    nothing in an unusable body decides where it is filed or how it is stored.
    """

    def reject(reason: str, text: str | None) -> Received:
        payload = {} if text is None else {"excerpt": text}
        return store(rejected_values(None, EventSource.LIFECYCLE, reason, payload, request_id), enqueue_after=False)

    if body is None:
        return reject("body too large", None)
    try:
        document = load_json_object(body)
    except Malformed as exc:
        token = runtime.settings().yclients_partner_token
        text = excerpt(body)
        return reject(str(exc), text.replace(token, "***") if token else text)
    fields = {k: v for k, v in document.items() if k != "partner_token"}
    opaque = excerpt(json.dumps(fields, ensure_ascii=False).encode())
    if not partner_token_matches(document.get("partner_token")):
        return reject(INVALID_TOKEN, opaque)
    expected_app = runtime.settings().yclients_application_id
    if expected_app is not None and str(document.get("application_id")) != str(expected_app):
        return reject("application_id is not this application", opaque)
    event = document.get("event")
    if event not in ("uninstall", "freeze"):
        return reject("unknown lifecycle event", opaque)
    salon_id = as_id(document.get("salon_id"), MAX_BIG_ID)
    company_id = None
    if isinstance(document.get("salon_id"), int) and salon_id is not None:
        company_id = db.session.scalar(select(Company.id).where(Company.salon_id == salon_id))
    if company_id is None:
        return reject("unknown salon", opaque)
    values = {
        "company_id": company_id,
        "source": EventSource.LIFECYCLE,
        "dedupe_key": dedupe_key(fields, company_id),
        "type": f"lifecycle.{event}",
        "payload": fields,
        "request_id": request_id,
    }
    return store(values, enqueue_after=True)


def installation(company_id: int) -> int | None:
    """The id of the company's latest registration or reinstall record (None for a company without one)."""
    return db.session.scalar(
        select(func.max(CompanyEvent.id))
        .where(CompanyEvent.company_id == company_id, CompanyEvent.kind.in_(INSTALLATION_KINDS))
    )


def dedupe_key(fields: dict[str, Any], company_id: int) -> str:
    """The inbox key of one authentic delivery (its fields without the token) arriving now."""
    return "lc:" + digest(fields, utcnow().date().isoformat(), installation(company_id))


def _send_session_task(task: Job, company_id: int) -> None:
    """Enqueue the gateway call before the change commits: with the broker down this raises, the
    change rolls back and the event is retried, so an uninstall never leaves WhatsApp linked. (A
    task sent for a change that then fails to commit is harmless: ending a session is idempotent.)"""
    enqueue(task, company_id, after_commit=False, fail_fast=True)


def apply(event: WebhookEvent) -> dict[str, Any] | None:
    """Uninstall (log out, revoke keys and webhook secret) or freeze (stop the session) a company."""
    company = db.session.get(Company, event.company_id, with_for_update=True) if event.company_id else None
    if company is None:
        raise Unprocessable("the company of this lifecycle event no longer exists")
    if company.integration_status == IntegrationStatus.UNINSTALLED and event.type == "lifecycle.freeze":
        return None  # an uninstalled company stays uninstalled
    if event.type == "lifecycle.uninstall":
        company.integration_status = IntegrationStatus.UNINSTALLED
        company.disconnected_at = utcnow()
        revoked = api_keys.revoke_keys(company.id)
        webhook_secrets.revoke_webhook_secret(company)
        data: dict[str, Any] = {"event_id": event.id, "keys_revoked": revoked}
        kind = "uninstalled"
    else:
        company.integration_status = IntegrationStatus.FROZEN
        data = {"event_id": event.id}
        kind = "frozen"
    company_events.record(company.id, kind, **data)
    company_events.publish_after_commit(company.id, f"company.{kind}", {"companyId": company.id, "status": kind})
    _send_session_task(SESSION_TASK[event.type], company.id)
    log.info("company %s %s by the marketplace", company.id, kind)
    return data
