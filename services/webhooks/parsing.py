"""Reading a webhook body: both accepted shapes, the mapping to our event types, the dedupe key.

YClients sends two shapes to a company's webhook URL:

* the reference's own ``{"type": "booking_created", "data": {...}, "created_at": "..."}``;
* YClients' native ``{"company_id", "resource", "resource_id", "status", "data"}``, mapped by
  ``NATIVE_TYPES``; other resources (``finances_operation`` …) are kept as ``<resource>.<status>``.

Neither carries an event id, so the dedupe key is derived from what identifies one delivery: the
company, the resource and its id, the change (type/status) and a hash of the canonical data (plus
``created_at`` in the reference shape). A retried delivery hashes to the same key; a different
change to the same record does not.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from datetime import UTC, datetime, tzinfo
from typing import Any

from models import EventSource
from services.platform import json_input
from services.platform.ids import MAX_BIG_ID, as_id

NATIVE_TYPES = {
    ("record", "create"): "booking_created",
    ("record", "update"): "booking_updated",
    ("record", "delete"): "booking_cancelled",
    ("client", "create"): "client_created",
    ("client", "update"): "client_updated",
}
BOOKING_TYPES = ("booking_created", "booking_updated", "booking_cancelled")
CLIENT_TYPES = ("client_created", "client_updated")
_NAME = re.compile(r"^[A-Za-z0-9_.:/-]{1,48}$")
# Rejected deliveries are unauthenticated writes: enough of the body to see what it was, no more.
EXCERPT_CHARS = 512


class Malformed(ValueError):
    """The body cannot be accepted; ``str(exc)`` is the reason stored with the rejected delivery."""


@dataclass(frozen=True)
class Delivery:
    """One accepted webhook delivery, ready to be stored in the inbox."""

    source: str
    type: str
    payload: dict[str, Any]
    dedupe_key: str


def canonical(value: Any) -> str:
    """Stable JSON text of ``value`` (sorted keys, no spaces, ASCII): what hashes are taken over."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=True)


def digest(*parts: Any) -> str:
    """SHA-256 hex of the canonical form of ``parts``."""
    return hashlib.sha256(canonical(list(parts)).encode()).hexdigest()


def load_json_object(body: bytes) -> dict[str, Any]:
    """The body as a JSON object that PostgreSQL's jsonb can hold, or ``Malformed``."""
    try:
        value = json_input.load(body, max_bytes=len(body))
    except json_input.JsonRejected as exc:
        if exc.reason == json_input.EMPTY:
            raise Malformed("empty body") from None
        raise Malformed(exc.reason if exc.reason == json_input.MALFORMED else f"malformed JSON: {exc.reason}") from None
    if not isinstance(value, dict):
        raise Malformed("body is not a JSON object")
    return value


def excerpt(body: bytes) -> str:
    """A storable excerpt of a rejected body (decoded leniently, NULs removed)."""
    return body[:EXCERPT_CHARS].decode("utf-8", errors="replace").replace("\x00", "")


def _int(value: Any) -> int | None:
    """A YClients id (positive, within BIGINT), or None."""
    return as_id(value, MAX_BIG_ID)


def _name(value: Any, what: str) -> str:
    if not isinstance(value, str) or not _NAME.match(value):
        raise Malformed(f"missing or invalid {what}")
    return value


def _data(body: dict[str, Any]) -> dict[str, Any]:
    data = body.get("data", {})
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise Malformed("data is not an object")
    return data


def _require_id(event_type: str, record_id: int | None) -> None:
    if event_type in BOOKING_TYPES + CLIENT_TYPES and record_id is None:
        raise Malformed(f"{event_type} without an integer id")


def parse_delivery(company_id: int, salon_id: int, body: bytes) -> Delivery:
    """Read one data-webhook body sent to ``company_id`` (YClients salon ``salon_id``)."""
    document = load_json_object(body)
    data = _data(document)
    if "type" in document:
        event_type = _name(document["type"], "type")
        _require_id(event_type, _int(data.get("id")))
        created_at = document.get("created_at")
        key = digest(company_id, EventSource.REFERENCE, event_type, digest(data), created_at)
        return Delivery(EventSource.REFERENCE, event_type, document, "wh:" + key)
    if "resource" in document:
        resource = _name(document["resource"], "resource")
        status = _name(document.get("status"), "status")
        sender = _int(document.get("company_id"))
        if document.get("company_id") is not None and sender != salon_id:
            raise Malformed("company_id does not match the salon of this webhook URL")
        resource_id = _int(document.get("resource_id"))
        event_type = NATIVE_TYPES.get((resource, status), f"{resource}.{status}")
        _require_id(event_type, resource_id if resource_id is not None else _int(data.get("id")))
        key = digest(company_id, EventSource.YCLIENTS, resource, document.get("resource_id"), status, digest(data))
        return Delivery(EventSource.YCLIENTS, event_type, document, "wh:" + key)
    raise Malformed("neither the reference shape (type) nor the YClients shape (resource)")


def record_id(event_type: str, payload: dict[str, Any]) -> int | None:
    """The YClients id of the record or client an event is about."""
    data = payload.get("data") or {}
    if "resource" in payload:
        found = _int(payload.get("resource_id"))
        if found is not None:
            return found
    return _int(data.get("id")) if isinstance(data, dict) else None


def parse_time(value: Any, zone: tzinfo = UTC) -> datetime | None:
    """An ISO-8601 (or ``YYYY-MM-DD HH:MM:SS``) timestamp in UTC; one without an offset is read as
    local time in ``zone`` (UTC unless told)."""
    if not isinstance(value, str) or not value:
        return None
    try:
        parsed = datetime.fromisoformat(value.strip())
    except ValueError:
        return None
    return (parsed if parsed.tzinfo else parsed.replace(tzinfo=zone)).astimezone(UTC)


def event_time(payload: dict[str, Any]) -> datetime | None:
    """When the change itself happened, if the payload says: ``created_at`` (reference shape) or the
    record's ``last_change_date`` (native shape). ``datetime`` is the appointment time, not a version."""
    if "resource" in payload:
        data = payload.get("data")
        return parse_time(data.get("last_change_date")) if isinstance(data, dict) else None
    return parse_time(payload.get("created_at"))
