"""The local mirror of bookings and clients, applied idempotently and in order per record.

Ordering rule: every event has a version — the time of the change itself when the payload says so
(``created_at`` in the reference shape, the record's ``last_change_date`` in YClients' shape), else
the time we received it — and the inbox id breaks ties. An event changes a mirrored row only if
its ``(version, event id)`` is newer than the row's ``(version_at, last_event_id)``; an older event
may only fill fields the row does not have yet, never overwrite one. Replaying the same event is
therefore a no-op. The appointment ``datetime`` is not a version: an update may move it earlier.
Rows are locked (``SELECT … FOR UPDATE``) so two workers never interleave on one record; a batch
locks all its rows at once, in key order, so two batches never deadlock on each other.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any, cast

from sqlalchemy import Table, select, tuple_
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from models import Booking, Client, WebhookEvent, db
from services.platform.text import single_line
from services.webhooks.parsing import BOOKING_TYPES, CLIENT_TYPES, event_time, record_id


class Unprocessable(ValueError):
    """The event can never be applied (retrying cannot help)."""


# Mirror rows locked by this transaction, by (model, company id, YClients id).
LockedRows = dict[tuple[type[Any], int, int], Any]


def _target(event: WebhookEvent) -> tuple[type[Booking] | type[Client], str] | None:
    if event.type in BOOKING_TYPES:
        return Booking, "record_id"
    if event.type in CLIENT_TYPES:
        return Client, "client_id"
    return None


def version_of(event: WebhookEvent) -> datetime:
    """The event's ordering time (its own time when the payload carries one, else receipt time)."""
    return event_time(event.payload or {}) or event.received_at


def lock_rows(events: Iterable[WebhookEvent]) -> LockedRows:
    """Create the mirror rows the events name and lock them all: per kind one INSERT of the missing
    ones and one ``SELECT … FOR UPDATE`` in key order (events without a usable id are left out)."""
    wanted: dict[tuple[type[Any], str], set[tuple[int, int]]] = {}
    for event in events:
        target = _target(event)
        key = record_id(event.type, event.payload or {})
        if target is not None and key is not None and event.company_id is not None:
            wanted.setdefault(target, set()).add((event.company_id, key))
    locked: LockedRows = {}
    dialect = db.session.get_bind().dialect.name
    insert = pg_insert if dialect == "postgresql" else sqlite_insert
    for (model, key_column), keys in wanted.items():
        ordered = sorted(keys)
        db.session.execute(
            insert(cast(Table, model.__table__))
            .values([{"company_id": company_id, key_column: key} for company_id, key in ordered])
            .on_conflict_do_nothing(index_elements=["company_id", key_column])
        )
        column = getattr(model, key_column)
        query = (
            select(model).where(tuple_(model.company_id, column).in_(ordered))
            .order_by(model.company_id, column).with_for_update()
        )
        for row in db.session.scalars(query.execution_options(populate_existing=True)):
            locked[(model, row.company_id, getattr(row, key_column))] = row
    return locked


def _is_newer(row: Booking | Client, version: datetime, event_id: int) -> bool:
    if row.version_at is None or row.last_event_id is None:
        return True
    return (version, event_id) > (row.version_at, row.last_event_id)


def _merge(current: dict[str, Any] | None, incoming: dict[str, Any], newer: bool) -> dict[str, Any]:
    if newer:
        return {**(current or {}), **incoming}
    return {**incoming, **(current or {})}


def _booking_fields(event: WebhookEvent) -> dict[str, Any]:
    data = dict((event.payload or {}).get("data") or {})
    changes = data.pop("changes", None)
    if isinstance(changes, dict):
        for field, change in changes.items():
            if isinstance(change, dict) and "new" in change:
                data[field] = change["new"]
    return data


_STALE = object()


def _merge_into(
    model: Any, id_column: str, event: WebhookEvent, fields: dict[str, Any], rows: LockedRows
) -> tuple[Any, int, Any]:
    """Lock (or create) the mirrored row the event names and merge its fields in.

    Returns the row, its YClients id and the event's version, or ``_STALE`` as the version when a
    newer event was already applied (an older one may only fill fields the row does not have yet).
    """
    assert event.company_id is not None
    key = record_id(event.type, event.payload or {})
    if key is None:
        raise Unprocessable(f"{event.type} without a {id_column.removesuffix('_id')} id")
    found = (model, event.company_id, key)
    row = rows[found] if found in rows else lock_rows([event])[found]
    version = version_of(event)
    newer = _is_newer(row, version, event.id)
    row.data = _merge(row.data, fields, newer)
    return row, key, version if newer else _STALE


def apply_booking(event: WebhookEvent, rows: LockedRows | None = None) -> dict[str, Any] | None:
    """Create, update or cancel the mirrored booking; the pushed event data, or None if stale."""
    row, key, version = _merge_into(Booking, "record_id", event, _booking_fields(event), rows or {})
    if version is _STALE:
        return None
    row.status = "cancelled" if event.type == "booking_cancelled" else "active"
    starts_at = row.data.get("datetime") or row.data.get("date")
    row.starts_at = single_line(starts_at, 32)
    row.version_at = version
    row.last_event_id = event.id
    return {"record_id": key, "status": row.status, "datetime": row.starts_at, "event_id": event.id}


def apply_client(event: WebhookEvent, rows: LockedRows | None = None) -> dict[str, Any] | None:
    """Create or update the mirrored client; the pushed event data, or None if stale."""
    data = dict((event.payload or {}).get("data") or {})
    row, key, version = _merge_into(Client, "client_id", event, data, rows or {})
    if version is _STALE:
        return None
    name, phone = row.data.get("name"), row.data.get("phone")
    row.name, row.phone = single_line(name, 255), single_line(phone, 32)
    row.version_at = version
    row.last_event_id = event.id
    return {"client_id": key, "name": row.name, "phone": row.phone, "event_id": event.id}
