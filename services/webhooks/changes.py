"""The hook after a mirrored booking or client changes: blinker signals sent once the change is committed.

Features react to bookings without the webhook processor knowing them: connect a receiver to
``booking_changed`` (or ``client_changed``) in a module every worker imports (the feature's tasks
module, say), since webhooks are processed in the workers::

    from services.webhooks.changes import BookingChange, ChangeKind, booking_changed

    @booking_changed.connect
    def plan_messages(change: BookingChange) -> None:
        if change.kind is ChangeKind.MOVED: ...

What a receiver gets: one frozen ``BookingChange`` (``ClientChange``) as the signal's sender —
``company_id``, ``event_id`` (the inbox event that made the change), the row's ids, and the row's
facts ``before`` (None the first time the mirror hears of it) and ``after``. ``kind`` sorts a booking
change into created / moved (time, master or services) / cancelled (deleted, or attendance −1) /
status (attendance only: confirmed, came) / other.

The rules:

* **With the event.** The mirror records a change in the transaction that applies it, and processing
  hands it to the receivers in that same transaction, just before it commits (``deliver``): what a
  receiver writes commits together with the change and the event's ``processed`` mark, or not at
  all. A worker killed in between loses both, and the event runs again; a rolled-back change is never
  announced. What a receiver enqueues or publishes goes after the commit (``on_commit``), as always.
* **Real changes only.** A change is recorded only when the facts differ: a duplicate, a replay or
  an older event that fills nothing is silent. A batch announces each booking once, from its state
  before the batch to its state after.
* **Receivers are isolated.** Each runs in a savepoint of its own: it reads and writes through
  ``db.session`` and only flushes (never commits); when it raises, its savepoint is rolled back and
  logged. A failing receiver never fails the webhook event, nor keeps the others from running.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace
from datetime import datetime
from enum import StrEnum
from typing import Any

from blinker import Namespace
from sqlalchemy import event
from sqlalchemy.orm import Session

from models import Booking, Client, db
from services.platform.transactions import savepoint

log = logging.getLogger(__name__)

_signals = Namespace()
booking_changed = _signals.signal("booking-changed", doc="A mirrored booking changed (sender: BookingChange).")
client_changed = _signals.signal("client-changed", doc="A mirrored client changed (sender: ClientChange).")

_RECORDED = "changes.recorded"
CANCELLED_ATTENDANCE = -1


class ChangeKind(StrEnum):
    """What a booking change means to the salon's client."""

    CREATED = "created"  # first heard of, or back from cancelled
    MOVED = "moved"  # another time, master or set of services
    CANCELLED = "cancelled"  # deleted, or attendance -1 (no-show)
    STATUS = "status"  # attendance only: confirmed, came, waiting again
    OTHER = "other"  # nothing a client is told about (length, client link, a fact learnt late)


@dataclass(frozen=True)
class BookingFacts:
    """A booking as the mirror holds it (``services`` are sorted titles)."""

    status: str
    starts_at: datetime | None
    ends_at: datetime | None
    staff_id: int | None
    staff_name: str | None
    services: tuple[str, ...]
    attendance: int | None
    client_id: int | None  # clients.id

    @property
    def cancelled(self) -> bool:
        """Deleted in YClients, or marked as a no-show."""
        return self.status == "cancelled" or self.attendance == CANCELLED_ATTENDANCE

    @classmethod
    def of(cls, row: Booking) -> BookingFacts:
        """The facts of a mirror row."""
        return cls(row.status, row.starts_at, row.ends_at, row.staff_id, row.staff_name,
                   tuple(row.services or ()), row.attendance, row.client_id)


def _changed(before: object, after: object) -> bool:
    """Both known and different: learning a fact that was missing is no change of it."""
    return before not in (None, ()) and after not in (None, ()) and before != after


def _moved(before: BookingFacts, after: BookingFacts) -> bool:
    if before.staff_id is not None and after.staff_id is not None:
        staff_changed = before.staff_id != after.staff_id
    else:
        staff_changed = _changed(before.staff_name, after.staff_name)
    return staff_changed or _changed(before.starts_at, after.starts_at) or _changed(before.services, after.services)


@dataclass(frozen=True)
class BookingChange:
    """A committed change of one mirrored booking."""

    company_id: int
    event_id: int
    booking_id: int  # bookings.id
    record_id: int  # YClients' record id
    before: BookingFacts | None  # None: the mirror had not heard of the booking
    after: BookingFacts

    @property
    def kind(self) -> ChangeKind:
        """Created, moved, cancelled, status-only or other (see ``ChangeKind``)."""
        before, after = self.before, self.after
        if after.cancelled:
            return ChangeKind.CANCELLED if before is None or not before.cancelled else ChangeKind.OTHER
        if before is None or before.cancelled:
            return ChangeKind.CREATED
        if _moved(before, after):
            return ChangeKind.MOVED
        if before.attendance != after.attendance:
            return ChangeKind.STATUS
        return ChangeKind.OTHER


@dataclass(frozen=True)
class ClientFacts:
    """A client as the mirror holds it (``phone`` in E.164, None when YClients' is no valid number)."""

    name: str | None
    phone: str | None

    @classmethod
    def of(cls, row: Client) -> ClientFacts:
        """The facts of a mirror row."""
        return cls(row.name, row.phone)


@dataclass(frozen=True)
class ClientChange:
    """A committed change of one mirrored client."""

    company_id: int
    event_id: int
    client_id: int  # clients.id (what BookingFacts.client_id links to)
    yclients_id: int  # YClients' client id
    before: ClientFacts | None  # None: the mirror had not heard of the client
    after: ClientFacts


Change = BookingChange | ClientChange


def record(change: Change) -> None:
    """Keep ``change`` for ``deliver`` in the current transaction, if it changed any fact."""
    if change.before == change.after:
        return
    db.session().info.setdefault(_RECORDED, []).append(change)


@event.listens_for(Session, "after_rollback")
def _forget_on_rollback(session: Session) -> None:
    session.info.pop(_RECORDED, None)


def _coalesced(changes: list[Change]) -> list[Change]:
    """One change per row: the first state before, the last state after (and the last event)."""
    first_before: dict[tuple[type, int], Any] = {}
    last: dict[tuple[type, int], Change] = {}
    for change in changes:
        key = (type(change), change.booking_id if isinstance(change, BookingChange) else change.client_id)
        first_before.setdefault(key, change.before)
        last[key] = change
    merged = [replace(change, before=first_before[key]) for key, change in last.items()]
    return [change for change in merged if change.before != change.after]


def deliver() -> None:
    """Send the changes recorded in the current transaction to the receivers, before it commits
    (processing calls this just before each commit of applied events); each receiver in a savepoint."""
    for change in _coalesced(db.session().info.pop(_RECORDED, [])):
        signal = booking_changed if isinstance(change, BookingChange) else client_changed
        for receiver in signal.receivers_for(change):
            try:
                with savepoint():
                    receiver(change)
            except Exception:
                log.exception("receiver %s of %s failed (company %s, webhook event %s)",
                              getattr(receiver, "__qualname__", receiver), signal.name,
                              change.company_id, change.event_id)
