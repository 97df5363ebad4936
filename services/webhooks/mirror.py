"""The local mirror of bookings and clients, applied idempotently and in order per record.

Ordering rule: every event has a version — the time of the change itself when the payload says so
(``created_at`` in the reference shape, the record's ``last_change_date`` in YClients' shape), else
the time we received it — and the inbox id breaks ties. An event changes a mirrored row only if
its ``(version, event id)`` is newer than the row's ``(version_at, last_event_id)``; an older event
may only fill fields the row does not have yet, never overwrite one. Replaying the same event is
therefore a no-op. The appointment ``datetime`` is not a version: an update may move it earlier.
Rows are locked (``SELECT … FOR UPDATE``) so two workers never interleave on one record; a batch
locks all its rows at once, in key order (bookings before clients, as a single event does), so two
batches never deadlock on each other.

The typed columns (times in UTC, staff, sorted services, attendance, the client's E.164 phone) are
read from the row's merged data after every event (``services.webhooks.records``). A booking that
names its client links to the client row (created if missing); the client fields a YClients record
carries are applied to that row as a change of the client, by the same ordering rule. Every change
of a row's facts is recorded for the hook (``services.webhooks.changes``), announced in the event's
transaction, before the commit.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from datetime import datetime
from typing import Any, cast

from sqlalchemy import Table, select, tuple_
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from models import Booking, Client, Company, WebhookEvent, db
from services.platform.text import single_line
from services.webhooks import changes, records
from services.webhooks.changes import BookingChange, BookingFacts, ClientChange, ClientFacts
from services.webhooks.parsing import BOOKING_TYPES, CLIENT_TYPES, event_time, record_id

log = logging.getLogger(__name__)


class Unprocessable(ValueError):
    """The event can never be applied (retrying cannot help)."""


# Mirror rows locked by this transaction, by (model, company id, YClients id).
LockedRows = dict[tuple[type[Any], int, int], Any]
MirrorRow = Booking | Client
# The YClients id column of each mirror table, in the order every transaction locks them.
KEY_COLUMNS: dict[type[Any], str] = {Booking: "record_id", Client: "client_id"}


def version_of(event: WebhookEvent) -> datetime:
    """The event's ordering time (its own time when the payload carries one, else receipt time)."""
    return event_time(event.payload or {}) or event.received_at


def _booking_fields(event: WebhookEvent) -> dict[str, Any]:
    data = dict((event.payload or {}).get("data") or {})
    diff = data.pop("changes", None)
    if isinstance(diff, dict):
        for field, change in diff.items():
            if isinstance(change, dict) and "new" in change:
                data[field] = change["new"]
    return data


def _named_rows(event: WebhookEvent) -> list[tuple[type[Any], int]]:
    """The mirror rows an event writes to: its booking (and the client it names) or its client."""
    key = record_id(event.type, event.payload or {})
    if key is None:
        return []
    if event.type in BOOKING_TYPES:
        client_key = records.record_client(_booking_fields(event))[0]
        return [(Booking, key)] + ([(Client, client_key)] if client_key is not None else [])
    return [(Client, key)] if event.type in CLIENT_TYPES else []


def lock_rows(events: Iterable[WebhookEvent]) -> LockedRows:
    """Create the mirror rows the events name and lock them all: per kind one INSERT of the missing
    ones and one ``SELECT … FOR UPDATE`` in key order (events without a usable id are left out)."""
    wanted: dict[type[Any], set[tuple[int, int]]] = {}
    for event in events:
        if event.company_id is not None:
            for model, key in _named_rows(event):
                wanted.setdefault(model, set()).add((event.company_id, key))
    locked: LockedRows = {}
    dialect = db.session.get_bind().dialect.name
    insert = pg_insert if dialect == "postgresql" else sqlite_insert
    for model, key_column in KEY_COLUMNS.items():
        if model not in wanted:
            continue
        ordered = sorted(wanted[model])
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


def _is_newer(row: MirrorRow, version: datetime, event_id: int) -> bool:
    if row.version_at is None or row.last_event_id is None:
        return True
    return (version, event_id) > (row.version_at, row.last_event_id)


def _merge(current: dict[str, Any] | None, incoming: dict[str, Any], newer: bool) -> dict[str, Any]:
    if newer:
        return {**(current or {}), **incoming}
    return {**incoming, **(current or {})}


def _locked(model: type[Any], event: WebhookEvent, key: int, rows: LockedRows) -> Any:
    """The row of ``model`` with YClients id ``key``, locked (and created) with the event's other rows."""
    assert event.company_id is not None
    found = (model, event.company_id, key)
    if found not in rows:
        rows.update(lock_rows([event]))
    return rows[found]


def _merge_event(row: MirrorRow, fields: dict[str, Any], version: datetime, event_id: int) -> bool:
    """Merge the event's fields into the row's data; True when it is the newest event the row has seen
    (an older one may only fill fields the row does not have yet)."""
    newer = _is_newer(row, version, event_id)
    row.data = _merge(row.data, fields, newer)
    if newer:
        row.version_at, row.last_event_id = version, event_id
    return newer


def _key(event: WebhookEvent, what: str) -> int:
    key = record_id(event.type, event.payload or {})
    if key is None:
        raise Unprocessable(f"{event.type} without a {what} id")
    return key


def _apply_to_client(row: Client, fields: dict[str, Any], version: datetime, event: WebhookEvent) -> bool:
    """Merge client fields (from a client event or a record that carries them); True when newest."""
    assert event.company_id is not None
    before = ClientFacts.of(row) if row.last_event_id is not None else None
    newer = _merge_event(row, fields, version, event.id)
    row.name, row.phone = records.client_columns(row.data)
    changes.record(ClientChange(event.company_id, event.id, row.id, row.client_id, before, ClientFacts.of(row)))
    return newer


def _read_booking(row: Booking, event: WebhookEvent, fields: dict[str, Any]) -> records.RecordFields:
    company = db.session.get(Company, row.company_id)
    assert company is not None  # the booking's foreign key holds it
    read = records.read_record(row.data, company.zone)
    if read.unreadable_time is not None and any(field in fields for field in records.TIME_FIELDS):
        log.warning("webhook event %s: booking %s has no readable time (%s); starts_at is left empty",
                    event.id, row.record_id, read.unreadable_time)
    row.starts_at, row.ends_at = read.starts_at, read.ends_at
    row.staff_id, row.staff_name = read.staff_id, read.staff_name
    row.services, row.attendance = read.services, read.attendance
    return read


def apply_booking(event: WebhookEvent, rows: LockedRows | None = None) -> dict[str, Any] | None:
    """Create, update or cancel the mirrored booking; the pushed event data, or None if stale."""
    assert event.company_id is not None
    rows = {} if rows is None else rows
    fields = _booking_fields(event)
    row: Booking = _locked(Booking, event, _key(event, "record"), rows)
    before = BookingFacts.of(row) if row.last_event_id is not None else None
    version = version_of(event)
    newer = _merge_event(row, fields, version, event.id)
    if newer:
        row.status = "cancelled" if event.type == "booking_cancelled" else "active"
    read = _read_booking(row, event, fields)
    named, client_fields = records.record_client(fields)
    if named is not None:
        client: Client = _locked(Client, event, named, rows)
        if client_fields:
            _apply_to_client(client, client_fields, version, event)
        if named == read.client_id:
            row.client_id = client.id
    elif read.client_id is None:
        row.client_id = None
    changes.record(BookingChange(event.company_id, event.id, row.id, row.record_id, before, BookingFacts.of(row)))
    if not newer:
        return None
    shown = single_line(row.data.get("datetime") or row.data.get("date"), 32)
    return {"record_id": row.record_id, "status": row.status, "datetime": shown, "event_id": event.id}


def apply_client(event: WebhookEvent, rows: LockedRows | None = None) -> dict[str, Any] | None:
    """Create or update the mirrored client; the pushed event data, or None if stale."""
    rows = {} if rows is None else rows
    row: Client = _locked(Client, event, _key(event, "client"), rows)
    if not _apply_to_client(row, dict((event.payload or {}).get("data") or {}), version_of(event), event):
        return None
    return {"client_id": row.client_id, "name": row.name, "phone": row.phone, "event_id": event.id}
