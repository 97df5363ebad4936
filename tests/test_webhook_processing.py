"""Processing inbox events into the booking/client mirror: idempotent, ordered, retried, dead-lettered."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import event as sqlalchemy_event
from sqlalchemy import select, text

from models import Booking, Client, EventStatus, WebhookEvent, db, utcnow
from services.platform import runtime
from services.platform.pubsub import company_channel
from services.webhooks import mirror, processing
from services.webhooks.ingest import insert_event
from tests.support import wait_until

# The zone of a company nobody told us otherwise about: times without an offset are read in it.
MOSCOW = ZoneInfo("Europe/Moscow")


def _event(company_id: int, event_type: str, payload: dict[str, Any], source: str = "reference") -> int:
    event_id = insert_event(
        company_id=company_id, source=source, dedupe_key=f"test:{uuid.uuid4().hex}", type=event_type, payload=payload
    )
    db.session.commit()
    assert event_id is not None
    return event_id


def _row(event_id: int) -> WebhookEvent:
    db.session.rollback()
    event = db.session.get(WebhookEvent, event_id, populate_existing=True)
    assert event is not None
    return event


def _booking(company_id: int, record_id: int) -> Booking:
    db.session.rollback()
    return db.session.scalars(
        select(Booking).where(Booking.company_id == company_id, Booking.record_id == record_id)
        .execution_options(populate_existing=True)
    ).one()


def _process(event_id: int) -> str:
    result = processing.process_event(event_id)
    return result.status


def test_booking_lifecycle_is_mirrored_and_pushed(ctx, company_factory):
    made = company_factory()
    pushed: list[dict] = []
    unsubscribe = runtime.bus().subscribe(company_channel(made.id), pushed.append)
    try:
        created = _event(made.id, "booking_created", {
            "type": "booking_created", "created_at": "2024-09-16T10:30:00Z",
            "data": {"id": 12345, "client_id": 67890, "datetime": "2024-09-17T15:00:00", "comment": "Первый визит"},
        })
        assert _process(created) == EventStatus.PROCESSED
        booking = _booking(made.id, 12345)
        assert (booking.status, booking.starts_at, booking.data["comment"]) == (
            "active", datetime(2024, 9, 17, 15, tzinfo=MOSCOW), "Первый визит")
        updated = _event(made.id, "booking_updated", {
            "type": "booking_updated", "created_at": "2024-09-16T11:00:00Z",
            "data": {"id": 12345,
                     "changes": {"datetime": {"old": "2024-09-17T15:00:00", "new": "2024-09-17T16:00:00"}}},
        })
        assert _process(updated) == EventStatus.PROCESSED
        booking = _booking(made.id, 12345)
        assert booking.starts_at == datetime(2024, 9, 17, 16, tzinfo=MOSCOW) and booking.data["client_id"] == 67890
        cancelled = _event(made.id, "booking_cancelled", {
            "type": "booking_cancelled", "created_at": "2024-09-16T12:00:00Z",
            "data": {"id": 12345, "cancelled_at": "2024-09-16T12:00:00Z", "reason": "Client request"},
        })
        assert _process(cancelled) == EventStatus.PROCESSED
        booking = _booking(made.id, 12345)
        assert booking.status == "cancelled" and booking.last_event_id == cancelled
        wait_until(lambda: len(pushed) == 3, timeout=5)
    finally:
        unsubscribe()
    assert [m["event"] for m in pushed] == ["booking.created", "booking.updated", "booking.cancelled"]
    assert pushed[2]["data"] == {"record_id": 12345, "status": "cancelled", "datetime": "2024-09-17T16:00:00",
                                 "event_id": cancelled}
    event = _row(cancelled)
    assert (event.status, event.attempts, event.next_attempt_at) == (EventStatus.PROCESSED, 1, None)
    assert event.processed_at is not None


def test_processing_twice_has_one_effect(ctx, company_factory):
    made = company_factory()
    event_id = _event(made.id, "booking_created", {"type": "booking_created", "data": {"id": 7}})
    assert _process(event_id) == EventStatus.PROCESSED
    before = _booking(made.id, 7).updated_at
    assert _process(event_id) == "skipped"
    assert _row(event_id).attempts == 1 and _booking(made.id, 7).updated_at == before


def test_out_of_order_updates_newest_wins(ctx, company_factory):
    made = company_factory()

    def native(status: str, changed: str, **data: Any) -> dict:
        return {"company_id": made.salon_id, "resource": "record", "resource_id": 55, "status": status,
                "data": {"id": 55, "last_change_date": changed, **data}}

    newest = _event(made.id, "booking_updated", native("update", "2024-09-16T12:00:00+03:00",
                                                       datetime="2024-09-18 10:00:00"), source="yclients")
    older = _event(made.id, "booking_updated", native("update", "2024-09-16T11:00:00+03:00",
                                                      datetime="2024-09-17 09:00:00", comment="old"),
                   source="yclients")
    oldest = _event(made.id, "booking_created", native("create", "2024-09-16T10:00:00+03:00",
                                                       datetime="2024-09-17 08:00:00", staff_id=3), source="yclients")
    for event_id in (newest, older, oldest):
        assert _process(event_id) == EventStatus.PROCESSED
    booking = _booking(made.id, 55)
    assert booking.starts_at == datetime(2024, 9, 18, 10, tzinfo=MOSCOW) and booking.last_event_id == newest
    # Older events only fill what the newest did not say; they never overwrite it.
    assert booking.data["datetime"] == "2024-09-18 10:00:00"
    assert booking.data["comment"] == "old" and booking.data["staff_id"] == 3


def test_receipt_order_decides_without_event_times(ctx, company_factory):
    made = company_factory()
    first = _event(made.id, "booking_created", {"type": "booking_created", "data": {"id": 9, "datetime": "a"}})
    second = _event(made.id, "booking_updated", {"type": "booking_updated", "data": {"id": 9, "datetime": "b"}})
    assert _process(second) == EventStatus.PROCESSED
    assert _process(first) == EventStatus.PROCESSED
    booking = _booking(made.id, 9)
    assert booking.data["datetime"] == "b" and booking.starts_at is None  # "b" is no time


def test_a_cancellation_is_not_undone_by_an_older_update(ctx, company_factory):
    made = company_factory()
    cancel = _event(made.id, "booking_cancelled", {"type": "booking_cancelled", "created_at": "2024-09-16T12:00:00Z",
                                                   "data": {"id": 3}})
    update = _event(made.id, "booking_updated", {"type": "booking_updated", "created_at": "2024-09-16T11:00:00Z",
                                                 "data": {"id": 3, "datetime": "x"}})
    _process(cancel)
    _process(update)
    assert _booking(made.id, 3).status == "cancelled"


def test_clients_are_mirrored(ctx, company_factory):
    made = company_factory()
    data = {"id": 67890, "name": "Иван Иванов", "phone": "+79001234567"}
    event_id = _event(made.id, "client_created", {"type": "client_created", "data": data})
    assert _process(event_id) == EventStatus.PROCESSED
    db.session.rollback()
    client = db.session.scalars(select(Client).where(Client.company_id == made.id)).one()
    assert (client.client_id, client.name, client.phone) == (67890, "Иван Иванов", "+79001234567")


def test_single_line_fields_of_a_client_are_stored_without_control_characters(ctx, company_factory):
    made = company_factory()
    data = {"id": 67891, "name": "Иван\nИванов\x1b[2J\u2028", "phone": "+7 900 123\t45 67" + " " * 40 + "9"}
    event_id = _event(made.id, "client_created", {"type": "client_created", "data": data})
    assert _process(event_id) == EventStatus.PROCESSED
    db.session.rollback()
    client = db.session.scalars(select(Client).where(Client.company_id == made.id)).one()
    # The phone column holds E.164 or nothing (services.phones): this one is no valid number, and stays
    # as it came only in the payload data.
    assert (client.name, client.phone, client.data["phone"]) == ("Иван Иванов [2J", None, data["phone"])


def test_unknown_resources_are_processed_without_a_mirror(ctx, company_factory):
    made = company_factory()
    event_id = _event(made.id, "finances_operation.create", {"resource": "finances_operation", "resource_id": 1,
                                                             "status": "create", "data": {}}, source="yclients")
    assert _process(event_id) == EventStatus.PROCESSED
    assert db.session.scalar(select(Booking.id)) is None and db.session.scalar(select(Client.id)) is None


def test_an_unprocessable_event_is_dead_at_once(ctx, company_factory):
    made = company_factory()
    event_id = _event(made.id, "booking_created", {"type": "booking_created", "data": {"client_id": 1}})
    assert _process(event_id) == EventStatus.DEAD
    event = _row(event_id)
    assert event.status == EventStatus.DEAD and "without a record id" in (event.last_error or "")


def test_failures_retry_with_backoff_then_die(make_app, company_factory):
    app = make_app(webhook_max_attempts=3, webhook_retry_base_seconds=2)
    made = company_factory()
    with app.app_context():
        event_id = _event(made.id, "booking_created", {"type": "booking_created", "data": {"id": 1}})
        db.session.execute(text("ALTER TABLE bookings RENAME TO bookings_moved"))
        db.session.commit()
        try:
            results = [processing.process_event(event_id) for _ in range(3)]
        finally:
            db.session.rollback()
            db.session.execute(text("ALTER TABLE bookings_moved RENAME TO bookings"))
            db.session.commit()
        assert [r.status for r in results] == [EventStatus.FAILED, EventStatus.FAILED, EventStatus.DEAD]
        assert 1 <= results[0].retry_in <= 2 and 2 <= results[1].retry_in <= 4  # type: ignore[operator]
        event = _row(event_id)
        assert (event.status, event.attempts, event.next_attempt_at) == (EventStatus.DEAD, 3, None)
        assert "bookings" in (event.last_error or "")
        assert processing.process_event(event_id).status == "skipped"  # dead stays dead until replayed


def test_backoff_grows_is_capped_and_jittered(make_app):
    with make_app(webhook_retry_base_seconds=5, webhook_retry_max_seconds=60).app_context():
        delays = [[processing.retry_delay(n) for _ in range(50)] for n in (1, 2, 3, 10)]
    assert all(2.5 <= d <= 5 for d in delays[0]) and all(5 <= d <= 10 for d in delays[1])
    assert all(30 <= d <= 60 for d in delays[3]) and len(set(delays[2])) > 1


def test_a_claim_is_exclusive_until_its_lease_runs_out(ctx, company_factory):
    made = company_factory()
    event_id = _event(made.id, "booking_created", {"type": "booking_created", "data": {"id": 1}})
    assert processing.claim(event_id) == 1
    assert processing.claim(event_id) is None
    db.session.execute(
        WebhookEvent.__table__.update().where(WebhookEvent.id == event_id)
        .values(next_attempt_at=utcnow() - timedelta(seconds=1))
    )
    db.session.commit()
    assert processing.claim(event_id) == 2


@pytest.mark.parametrize("status", [EventStatus.REJECTED, EventStatus.PROCESSED])
def test_rejected_and_processed_events_are_never_claimed(ctx, company_factory, status):
    made = company_factory()
    event_id = insert_event(company_id=made.id, source="reference", dedupe_key=f"t:{uuid.uuid4().hex}",
                            type="booking_created", payload={"data": {"id": 1}}, status=status)
    db.session.commit()
    assert event_id is not None and processing.process_event(event_id).status == "skipped"


def _booking_event(company_id: int, event_type: str, record: int, created_at: str, **data: Any) -> int:
    payload = {"type": event_type, "created_at": created_at, "data": {"id": record, **data}}
    return _event(company_id, event_type, payload)


def test_a_batch_is_applied_together_and_in_order(ctx, company_factory):
    made = company_factory()
    pushed: list[dict] = []
    unsubscribe = runtime.bus().subscribe(company_channel(made.id), pushed.append)
    try:
        ids = [
            _booking_event(made.id, "booking_updated", 7, "2024-09-16T10:40:00Z", datetime="2024-09-18T12:00:00"),
            _booking_event(made.id, "booking_created", 7, "2024-09-16T10:30:00Z", datetime="2024-09-17T15:00:00",
                           comment="first"),
            _booking_event(made.id, "booking_created", 8, "2024-09-16T10:30:00Z", datetime="2024-09-19T09:00:00"),
            _event(made.id, "client_created", {"type": "client_created", "data": {"id": 5, "name": "Анна"}}),
            _event(made.id, "finances_operation.create", {"resource": "finances_operation", "resource_id": 1,
                                                          "status": "create", "data": {}}, source="yclients"),
        ]
        results = processing.process_batch(ids)
        assert {event_id: r.status for event_id, r in results.items()} == dict.fromkeys(ids, EventStatus.PROCESSED)
        seven = _booking(made.id, 7)
        # The older create arrived second: it fills the comment but never moves the newer datetime back.
        assert (seven.starts_at, seven.data["comment"], seven.last_event_id) == (
            datetime(2024, 9, 18, 12, tzinfo=MOSCOW), "first", ids[0])
        assert _booking(made.id, 8).starts_at == datetime(2024, 9, 19, 9, tzinfo=MOSCOW)
        assert db.session.scalars(select(Client.name)).all() == ["Анна"]
        assert {(e.status, e.attempts) for e in map(_row, ids)} == {(EventStatus.PROCESSED, 1)}
        assert wait_until(lambda: len(pushed) == 3)  # the stale create is not pushed
        assert processing.process_batch(ids) == dict.fromkeys(ids, processing.Result("skipped"))
    finally:
        unsubscribe()


def test_one_bad_event_does_not_hold_back_its_batch(ctx, company_factory):
    made = company_factory()
    good = _booking_event(made.id, "booking_created", 1, "2024-09-16T10:30:00Z")
    bad = _event(made.id, "booking_created", {"type": "booking_created", "data": {"client_id": 1}})
    done = _event(made.id, "booking_created", {"type": "booking_created", "data": {"id": 2}})
    assert processing.process_event(done).status == EventStatus.PROCESSED
    results = processing.process_batch([good, bad, done])
    assert {k: v.status for k, v in results.items()} == {good: EventStatus.PROCESSED, bad: EventStatus.DEAD,
                                                         done: "skipped"}
    assert _booking(made.id, 1).status == "active"
    assert "without a record id" in (_row(bad).last_error or "")


def test_a_batch_that_loses_a_claim_runs_one_by_one(ctx, company_factory, monkeypatch):
    made = company_factory()
    ids = [_booking_event(made.id, "booking_created", n, "2024-09-16T10:30:00Z") for n in (1, 2)]
    claim_many = processing.claim_many

    def claimed_then_taken_over(event_ids: list[int]) -> dict[int, int]:
        claims = claim_many(event_ids)
        # Another run takes the first event over (as after an expired lease) before this one commits.
        db.session.execute(EVENTS_UPDATE.where(WebhookEvent.id == ids[0]).values(attempts=WebhookEvent.attempts + 1))
        db.session.commit()
        return claims

    monkeypatch.setattr(processing, "claim_many", claimed_then_taken_over)
    results = processing.process_batch(ids)
    assert {k: v.status for k, v in results.items()} == {ids[0]: "skipped", ids[1]: EventStatus.PROCESSED}
    assert _row(ids[0]).status == EventStatus.PROCESSING  # left to the run that owns it
    assert db.session.scalars(select(Booking.record_id)).all() == [2]


EVENTS_UPDATE = WebhookEvent.__table__.update()


def test_a_batch_locks_its_rows_in_key_order_whatever_the_event_order(ctx, company_factory):
    """Two batches naming the same records lock them in the same order, so they cannot deadlock."""
    made = company_factory()
    ids = [_booking_event(made.id, "booking_created", record, "2024-09-16T10:30:00Z") for record in (30, 10, 20)]
    events = db.session.scalars(select(WebhookEvent).where(WebhookEvent.id.in_(ids))).all()
    statements: list[tuple[str, Any]] = []

    def record(conn, cursor, statement, parameters, context, executemany):  # noqa: ANN001
        statements.append((statement, parameters))

    assert db.engine is not None
    sqlalchemy_event.listen(db.engine, "before_cursor_execute", record)
    try:
        rows = mirror.lock_rows(reversed(events))
    finally:
        sqlalchemy_event.remove(db.engine, "before_cursor_execute", record)
    assert [key for _model, _company, key in rows] == [10, 20, 30]
    insert = next(params for sql, params in statements if sql.lstrip().upper().startswith("INSERT"))
    values = list(insert.values()) if isinstance(insert, dict) else list(insert)
    assert [v for v in values if v in (10, 20, 30)] == [10, 20, 30]
    lock = next(sql for sql, _ in statements if "FOR UPDATE" in sql.upper() or "SELECT" in sql.upper())
    assert "ORDER BY" in lock.upper()
    db.session.rollback()
