"""Gateway events for a company's session: duplicates and stale events dropped, the rest applied to the
session state machine (``services.whatsapp.sessions``) or, for messages and receipts, to ``events``."""

from __future__ import annotations

import json
from typing import Any, cast

from integrations.whatsapp.waha import phone_from_me
from models import Company, SessionStatus, db, utcnow
from services.platform import runtime
from services.whatsapp import events
from services.whatsapp.gateway import company_id_for_session
from services.whatsapp.sessions import ALIVE, CLOSED, ENDED_BY_US, apply_status, end_again, session_for


def _is_stale(company_id: int, event: dict[str, Any]) -> bool:
    """True for a duplicate (same event id) or an event older than the last one applied, judged only by
    what the event carries: older WAHA releases send neither ``id`` nor ``timestamp``."""
    redis, settings = runtime.redis(), runtime.settings()
    event_id = event.get("id")
    if isinstance(event_id, str) and event_id:
        if not redis.set(settings.key("whatsapp", "event", company_id, event_id[:80]), 1, nx=True, ex=24 * 3600):
            return True
    stamp = event.get("timestamp")
    if not isinstance(stamp, int) or isinstance(stamp, bool):
        return False
    key = settings.key("whatsapp", "last_event", company_id)
    raw = cast("bytes | None", redis.get(key))
    if raw and stamp < json.loads(raw)["ts"]:
        return True
    # Written while the session row is locked, so a handler that waits for the lock sees it.
    redis.set(key, json.dumps({"ts": stamp}), ex=7 * 24 * 3600)
    return False


def event_company(event: dict[str, Any]) -> int | None:
    """The company an event is for: from the per-company URL it came to, else from our session name."""
    company_id = event.get("company_id")
    if isinstance(company_id, int) and not isinstance(company_id, bool):
        return company_id
    return company_id_for_session(event.get("session"))


def handle_event(event: dict[str, Any]) -> str:
    """Apply one gateway event; returns what was done (for logs and tests)."""
    company_id = event_company(event)
    payload = event.get("payload") if isinstance(event.get("payload"), dict) else None
    kind = event.get("event")
    if kind not in ("session.status", *events.KINDS) or company_id is None or payload is None:
        return "ignored"
    company = db.session.get(Company, company_id)
    if company is None:
        return "ignored"
    if kind in events.KINDS:
        return events.handle(company, str(kind), payload)
    row = session_for(company_id, lock=True)
    if event.get("session") not in (None, row.gateway_session):
        return "foreign"  # a session this company no longer uses (renamed, or a single session taken over)
    if _is_stale(company_id, event):
        return "stale"
    status, code = str(payload.get("status", "")), payload.get("code")
    code = code if isinstance(code, int) and not isinstance(code, bool) else None
    if company.integration_status in CLOSED:
        if status in ALIVE:
            end_again(company)
        return "closed"
    if row.status in (SessionStatus.STOPPED, SessionStatus.FAILED) and row.failure_reason in ENDED_BY_US:
        return "ended"  # we stopped it (or ended the attempt): a late or rotating gateway does not revive it
    row.updated_at = utcnow()
    reason = payload.get("reason")
    return apply_status(company, row, status, code=code, reason=str(reason) if reason else None,
                        phone=phone_from_me(event.get("me")))
