"""What a YClients record (booking) or client says, read into the mirror's columns.

Pure functions of a row's merged payload data (and the salon's time zone), used by the mirror
(``services.webhooks.mirror``) and by the backfill of migration 0003:

* **start**: ``datetime`` — ISO 8601; YClients' own records carry an offset
  (``2024-09-17T15:00:00+03:00``), the reference shape does not (``2024-09-17T15:00:00``) — else
  ``date`` (``2024-09-17 15:00:00``). A time without an offset is the salon's local time and is read
  in its zone; the result is in UTC, and None when no field reads as a time.
* **end**: the start plus ``seance_length`` seconds.
* **services**: the titles, sorted — YClients lists a record's services in random order, and an
  order that changed is no change.
* **attendance**: 2 confirmed, 1 came, 0 waiting, −1 no-show.
* **client**: ``client`` ``{id, name, phone}`` (YClients' shape) or ``client_id`` (the reference
  shape); a client's phone is kept in E.164 (``services.phones``), None when it is no valid number.
* names and titles are stored as one line within their column (``services.platform.text``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta, tzinfo
from typing import Any

from services.phones import normalise_phone
from services.platform.ids import MAX_BIG_ID, as_id
from services.platform.text import single_line
from services.webhooks.parsing import parse_time

TIME_FIELDS = ("datetime", "date")
TEXT_LIMIT = 255
ATTENDANCE = (-1, 0, 1, 2)
MAX_SEANCE_SECONDS = 7 * 24 * 3600


@dataclass(frozen=True)
class RecordFields:
    """The columns a booking's payload gives."""

    starts_at: datetime | None
    ends_at: datetime | None
    staff_id: int | None
    staff_name: str | None
    services: list[str]
    attendance: int | None
    client_id: int | None  # YClients' id of the client
    # The time the record gives when none of its time fields could be read (to report it).
    unreadable_time: str | None = None


def _text(value: Any) -> str | None:
    """A name or title: one line within its column (services.platform.text), None if it is no text."""
    return single_line(value, TEXT_LIMIT) if isinstance(value, str | int) and not isinstance(value, bool) else None


def _mapping(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _yclients_id(value: Any) -> int | None:
    return as_id(value, MAX_BIG_ID)


def _number(value: Any, allowed: range | tuple[int, ...]) -> int | None:
    """A JSON integer (or a string of one) among ``allowed``; None for anything else."""
    if isinstance(value, str):
        try:
            value = int(value)
        except ValueError:
            return None
    if isinstance(value, bool) or not isinstance(value, int) or value not in allowed:
        return None
    return value


def start_time(data: Mapping[str, Any], zone: tzinfo) -> tuple[datetime | None, str | None]:
    """The record's start in UTC, and the raw value when the record gives one that does not read."""
    given = [data[field] for field in TIME_FIELDS if data.get(field) not in (None, "")]
    for value in given:
        parsed = parse_time(value, zone)
        if parsed is not None:
            return parsed, None
    return None, (repr(given[0])[:80] if given else None)


def record_client(data: Mapping[str, Any]) -> tuple[int | None, dict[str, Any] | None]:
    """The YClients id of the record's client, and the client's fields when the record carries them."""
    embedded = data.get("client")
    if isinstance(embedded, Mapping):
        client_id = _yclients_id(embedded.get("id"))
        return client_id, (dict(embedded) if client_id is not None else None)
    return _yclients_id(data.get("client_id")), None


def read_record(data: Mapping[str, Any], zone: tzinfo) -> RecordFields:
    """The booking columns of a record's merged payload data, times read in the salon's ``zone``."""
    starts_at, unreadable = start_time(data, zone)
    length = _number(data.get("seance_length"), range(MAX_SEANCE_SECONDS + 1))
    staff = _mapping(data.get("staff"))
    services = data.get("services")
    titles = sorted(
        title for title in (_text(_mapping(s).get("title")) for s in (services if isinstance(services, list) else []))
        if title is not None
    )
    return RecordFields(
        starts_at=starts_at,
        ends_at=starts_at + timedelta(seconds=length) if starts_at is not None and length is not None else None,
        staff_id=_yclients_id(data.get("staff_id") if data.get("staff_id") is not None else staff.get("id")),
        staff_name=_text(staff.get("name")),
        services=titles,
        attendance=_number(data.get("attendance"), ATTENDANCE),
        client_id=record_client(data)[0],
        unreadable_time=unreadable,
    )


def client_columns(data: Mapping[str, Any]) -> tuple[str | None, str | None]:
    """A client's name and E.164 phone from its merged payload data (the raw phone stays in the data)."""
    return _text(data.get("name")), normalise_phone(data.get("phone"))
