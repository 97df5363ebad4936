"""The hook after a mirrored booking or client changes (services.webhooks.changes): once per real change,
in the event's transaction, never for a rolled-back one, and a failing receiver never fails the webhook event."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

import pytest
from blinker import Signal
from sqlalchemy import select, text

from models import Booking, Company, EventStatus, WebhookEvent, db
from services.webhooks import processing
from services.webhooks.changes import (
    BookingChange,
    BookingFacts,
    ChangeKind,
    ClientChange,
    ClientFacts,
    booking_changed,
    client_changed,
)
from services.webhooks.ingest import insert_event


@contextmanager
def heard(signal: Signal = booking_changed) -> Iterator[list[Any]]:
    """The changes ``signal`` delivers while the block runs."""
    changes: list[Any] = []
    with signal.connected_to(changes.append):
        yield changes


def _store(company_id: int, event_type: str, payload: dict[str, Any], source: str = "yclients") -> int:
    event_id = insert_event(company_id=company_id, source=source, dedupe_key=f"test:{uuid.uuid4().hex}",
                            type=event_type, payload=payload)
    db.session.commit()
    assert event_id is not None
    return event_id


def _record(salon_id: int, record_id: int, changed: str | None, status: str = "update", **data: Any) -> dict[str, Any]:
    """A YClients record webhook; ``changed`` is its ``last_change_date`` (the ordering version; None: the
    time it is received)."""
    record = {"id": record_id, "datetime": "2024-09-17T15:00:00+03:00", "seance_length": 3600,
              "staff": {"id": 3, "name": "Анна"},
              "services": [{"id": 1, "title": "Стрижка"}, {"id": 2, "title": "Укладка"}],
              "attendance": 0, "last_change_date": changed, **data}
    return {"company_id": salon_id, "resource": "record", "resource_id": record_id, "status": status, "data": record}


def _run(company_id: int, event_type: str, payload: dict[str, Any], expect: str = EventStatus.PROCESSED) -> int:
    event_id = _store(company_id, event_type, payload)
    assert processing.process_event(event_id).status == expect
    return event_id


def _facts(**changed: Any) -> BookingFacts:
    base = dict(status="active", starts_at=datetime(2024, 9, 17, 12, tzinfo=UTC),
                ends_at=datetime(2024, 9, 17, 13, tzinfo=UTC), staff_id=3, staff_name="Анна",
                services=("Стрижка", "Укладка"), attendance=0, client_id=None)
    return BookingFacts(**{**base, **changed})  # type: ignore[arg-type]


def test_each_real_change_is_announced_once_with_its_before_and_after(ctx, company_factory):
    made = company_factory()
    noon = datetime(2024, 9, 17, 12, tzinfo=UTC)
    with heard() as changes:
        created = _run(made.id, "booking_created", _record(made.salon_id, 55, "2024-09-16T10:00:00+03:00", "create"))
        assert processing.process_event(created).status == "skipped"  # the same event again
        # A new delivery that says what the mirror already holds (services in another order): nothing changed.
        _run(made.id, "booking_updated", _record(made.salon_id, 55, "2024-09-16T10:05:00+03:00", services=[
            {"id": 2, "title": "Укладка"}, {"id": 1, "title": "Стрижка"}]))
        confirmed = _run(made.id, "booking_updated", _record(made.salon_id, 55, "2024-09-16T11:00:00+03:00",
                                                             attendance=2))
        moved = _run(made.id, "booking_updated", _record(made.salon_id, 55, "2024-09-16T12:00:00+03:00",
                                                         attendance=2, datetime="2024-09-18T10:00:00+03:00"))
        # An older update arrives late: it overwrites nothing, so nothing is announced.
        _run(made.id, "booking_updated", _record(made.salon_id, 55, "2024-09-16T11:30:00+03:00",
                                                 datetime="2024-09-19T10:00:00+03:00"))
        deleted = _run(made.id, "booking_cancelled", _record(made.salon_id, 55, "2024-09-16T13:00:00+03:00",
                                                             "delete", attendance=2,
                                                             datetime="2024-09-18T10:00:00+03:00"))
    booking = db.session.scalars(select(Booking).where(Booking.record_id == 55)).one()
    assert [(c.kind, c.event_id) for c in changes] == [
        (ChangeKind.CREATED, created), (ChangeKind.STATUS, confirmed), (ChangeKind.MOVED, moved),
        (ChangeKind.CANCELLED, deleted),
    ]
    assert {(c.company_id, c.booking_id, c.record_id) for c in changes} == {(made.id, booking.id, 55)}
    first, status, move, cancel = changes
    assert first.before is None and first.after == _facts(starts_at=noon)
    assert (status.before, status.after) == (first.after, _facts(attendance=2))
    assert move.before == status.after
    assert move.after == _facts(attendance=2, starts_at=datetime(2024, 9, 18, 7, tzinfo=UTC),
                                ends_at=datetime(2024, 9, 18, 8, tzinfo=UTC))
    assert cancel.before == move.after
    assert cancel.after == BookingFacts(**{**move.after.__dict__, "status": "cancelled"})


def test_a_no_show_is_a_cancellation_and_a_batch_announces_each_booking_once(ctx, company_factory):
    made = company_factory()
    ids = [
        _store(made.id, "booking_created", _record(made.salon_id, 7, "2024-09-16T10:00:00+03:00", "create")),
        _store(made.id, "booking_updated", _record(made.salon_id, 7, "2024-09-16T10:10:00+03:00",
                                                   staff={"id": 4, "name": "Вера"})),
        _store(made.id, "booking_created", _record(made.salon_id, 8, "2024-09-16T10:00:00+03:00", "create")),
    ]
    with heard() as changes:
        results = processing.process_batch(ids)
        assert {r.status for r in results.values()} == {EventStatus.PROCESSED}
        no_show = _run(made.id, "booking_updated", _record(made.salon_id, 8, "2024-09-16T11:00:00+03:00",
                                                           attendance=-1))
    assert [(c.record_id, c.kind, c.event_id) for c in changes] == [
        (7, ChangeKind.CREATED, ids[1]), (8, ChangeKind.CREATED, ids[2]), (8, ChangeKind.CANCELLED, no_show),
    ]
    assert changes[0].before is None and (changes[0].after.staff_id, changes[0].after.staff_name) == (4, "Вера")


def test_a_change_is_announced_in_its_events_transaction_and_what_receivers_write_commits_with_it(
        ctx, company_factory):
    made = company_factory()
    seen: list[list[tuple[str, str]]] = []

    def look_from_another_connection(change: BookingChange) -> None:
        company = db.session.get(Company, change.company_id)
        assert company is not None and db.engine is not None
        company.address = "written by the receiver"
        db.session.flush()
        with db.engine.connect() as other:
            seen.append([tuple(row) for row in other.execute(
                text("SELECT b.status, e.status FROM bookings b JOIN webhook_events e ON e.id = b.last_event_id "
                     "WHERE b.id = :id"), {"id": change.booking_id})])

    with booking_changed.connected_to(look_from_another_connection):
        _run(made.id, "booking_cancelled", _record(made.salon_id, 5, "2024-09-16T10:00:00+03:00", "delete"))
    # Nothing of it was committed while the receiver ran (a worker killed then loses it all, and the event
    # runs again); then the booking, the event's mark and the receiver's write were committed at once.
    assert seen == [[]]
    db.session.rollback()
    company = db.session.get(Company, made.id, populate_existing=True)
    assert company is not None and company.address == "written by the receiver"


def test_a_rolled_back_change_is_never_announced(ctx, company_factory, monkeypatch):
    made = company_factory()
    event_id = _store(made.id, "booking_created", _record(made.salon_id, 6, "2024-09-16T10:00:00+03:00", "create"))
    claim_many = processing.claim_many

    def claimed_then_taken_over(event_ids: list[int]) -> dict[int, int]:
        claims = claim_many(event_ids)
        # Another run takes the event over (its lease ran out) before this run commits: this run rolls back.
        db.session.execute(WebhookEvent.__table__.update().where(WebhookEvent.id == event_id)
                           .values(attempts=WebhookEvent.attempts + 1))
        db.session.commit()
        return claims

    monkeypatch.setattr(processing, "claim_many", claimed_then_taken_over)
    with heard() as changes:
        assert processing.process_event(event_id).status == "skipped"
    assert changes == [] and db.session.scalar(select(Booking.id)) is None


def test_a_batch_rolled_back_by_a_bad_event_announces_its_good_bookings_once(ctx, company_factory):
    made = company_factory()
    good = _store(made.id, "booking_created", _record(made.salon_id, 1, "2024-09-16T10:00:00+03:00", "create"))
    bad = _store(made.id, "booking_created", {"type": "booking_created", "data": {"client_id": 1}}, source="reference")
    with heard() as changes:
        results = processing.process_batch([good, bad])
    assert {k: v.status for k, v in results.items()} == {good: EventStatus.PROCESSED, bad: EventStatus.DEAD}
    assert [(c.record_id, c.event_id) for c in changes] == [(1, good)]


def test_a_failing_receiver_fails_neither_the_event_nor_the_other_receivers(ctx, company_factory, caplog):
    made = company_factory()

    def broken(change: BookingChange) -> None:
        company = db.session.get(Company, change.company_id)
        assert company is not None
        company.title = "written by a receiver that then failed"
        db.session.flush()
        raise RuntimeError("receiver bug")

    def working(change: BookingChange) -> None:
        company = db.session.get(Company, change.company_id)
        assert company is not None
        company.address = "written by a receiver that worked"

    with caplog.at_level(logging.ERROR, logger="services.webhooks.changes"), \
            booking_changed.connected_to(broken), booking_changed.connected_to(working):
        event_id = _run(made.id, "booking_created", _record(made.salon_id, 2, "2024-09-16T10:00:00+03:00", "create"))
    db.session.rollback()
    event = db.session.get(WebhookEvent, event_id, populate_existing=True)
    assert event is not None and (event.status, event.last_error) == (EventStatus.PROCESSED, None)
    company = db.session.get(Company, made.id, populate_existing=True)
    assert company is not None and (company.title, company.address) == (None, "written by a receiver that worked")
    [failure] = [r for r in caplog.records if "failed" in r.getMessage()]
    assert "broken" in failure.getMessage() and f"webhook event {event_id}" in failure.getMessage()
    assert failure.exc_info is not None and "receiver bug" in str(failure.exc_info[1])


def test_client_changes_are_announced_from_client_events_and_from_the_records_that_carry_them(ctx, company_factory):
    made = company_factory()
    with heard(client_changed) as changes:
        created = _run(made.id, "client_created", {"type": "client_created", "data": {
            "id": 77, "name": "Ольга", "phone": "8 900 123-45-67"}})
        _run(made.id, "client_updated", {"type": "client_updated", "data": {"id": 77, "phone": "+7 900 123 45 67"}})
        # The record is newer than what the client events said (received later): its client fields win.
        booked = _run(made.id, "booking_created", _record(made.salon_id, 3, None, "create",
                                                          client={"id": 77, "name": "Ольга", "phone": "89007654321"}))
    assert [(type(c), c.event_id, c.yclients_id) for c in changes] == [(ClientChange, created, 77),
                                                                        (ClientChange, booked, 77)]
    assert (changes[0].before, changes[0].after) == (None, ClientFacts("Ольга", "+79001234567"))
    assert changes[1].before == changes[0].after and changes[1].after == ClientFacts("Ольга", "+79007654321")
    booking = db.session.scalars(select(Booking).where(Booking.record_id == 3)).one()
    assert booking.client_id == changes[0].client_id



@pytest.mark.parametrize(("before", "after", "kind"), [
    (None, _facts(), ChangeKind.CREATED),
    (None, _facts(status="cancelled"), ChangeKind.CANCELLED),
    (_facts(status="cancelled"), _facts(), ChangeKind.CREATED),
    (_facts(), _facts(starts_at=datetime(2024, 9, 17, 13, tzinfo=UTC)), ChangeKind.MOVED),
    (_facts(), _facts(staff_id=4, staff_name="Вера"), ChangeKind.MOVED),
    (_facts(staff_id=None), _facts(staff_id=None, staff_name="Вера"), ChangeKind.MOVED),
    (_facts(), _facts(services=("Стрижка",)), ChangeKind.MOVED),
    (_facts(), _facts(attendance=2), ChangeKind.STATUS),
    (_facts(attendance=2), _facts(attendance=1), ChangeKind.STATUS),
    (_facts(), _facts(attendance=-1), ChangeKind.CANCELLED),
    (_facts(), _facts(status="cancelled"), ChangeKind.CANCELLED),
    (_facts(status="cancelled"), _facts(status="cancelled", attendance=-1), ChangeKind.OTHER),
    (_facts(), _facts(ends_at=datetime(2024, 9, 17, 14, tzinfo=UTC)), ChangeKind.OTHER),
    (_facts(), _facts(client_id=9), ChangeKind.OTHER),
    # Facts learnt late (an older event filling what the newest did not say) are no move.
    (_facts(starts_at=None), _facts(), ChangeKind.OTHER),
    (_facts(staff_id=None, staff_name=None), _facts(), ChangeKind.OTHER),
    (_facts(services=()), _facts(), ChangeKind.OTHER),
])
def test_the_kind_of_a_booking_change(before, after, kind):
    assert BookingChange(1, 1, 1, 1, before, after).kind is kind
