"""The mirror's typed columns: booking times in the salon's zone, sorted services, staff, attendance, the
client link and the client's E.164 phone — read from payloads, stored and read back through the database."""

from __future__ import annotations

import logging
import uuid
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import select

from models import Booking, Client, Company, EventStatus, db
from services.webhooks import processing
from services.webhooks.ingest import insert_event
from services.webhooks.records import client_columns, read_record

YEKATERINBURG = ZoneInfo("Asia/Yekaterinburg")  # UTC+5 all year
KALININGRAD = ZoneInfo("Europe/Kaliningrad")  # UTC+2 all year


@pytest.mark.parametrize(("zone", "utc_hour"), [(YEKATERINBURG, 10), (KALININGRAD, 13)])
@pytest.mark.parametrize("field", ["datetime", "date"])
def test_a_time_without_offset_is_salon_local(zone, utc_hour, field):
    value = "2024-09-17T15:00:00" if field == "datetime" else "2024-09-17 15:00:00"
    assert read_record({field: value}, zone).starts_at == datetime(2024, 9, 17, utc_hour, tzinfo=UTC)


@pytest.mark.parametrize("zone", [YEKATERINBURG, KALININGRAD])
def test_a_time_with_an_offset_is_kept_whatever_the_salon_zone(zone):
    fields = read_record({"datetime": "2024-09-17T15:00:00+03:00", "date": "2024-09-17 15:00:00"}, zone)
    assert fields.starts_at == datetime(2024, 9, 17, 12, tzinfo=UTC) and fields.starts_at.tzinfo is UTC


def test_an_unreadable_time_is_no_time_and_says_what_it_was():
    fields = read_record({"datetime": "завтра", "seance_length": 3600}, YEKATERINBURG)
    assert (fields.starts_at, fields.ends_at, fields.unreadable_time) == (None, None, "'завтра'")
    assert read_record({"datetime": "завтра", "date": "2024-09-17 15:00:00"}, UTC).starts_at == datetime(
        2024, 9, 17, 15, tzinfo=UTC)
    assert read_record({}, UTC).unreadable_time is None


def test_services_are_sorted_titles_and_the_end_comes_from_the_length():
    data = {"datetime": "2024-09-17T15:00:00+05:00", "seance_length": 5400,
            "services": [{"id": 2, "title": "Укладка"}, {"id": 1, "title": "Стрижка"}, {"id": 3}, "junk"],
            "staff": {"id": 3, "name": "Анна"}, "attendance": -1, "client": {"id": 77, "name": "Ольга"}}
    fields = read_record(data, UTC)
    assert fields.services == ["Стрижка", "Укладка"]
    assert fields.ends_at == datetime(2024, 9, 17, 11, 30, tzinfo=UTC)
    assert (fields.staff_id, fields.staff_name, fields.attendance, fields.client_id) == (3, "Анна", -1, 77)
    shuffled = {**data, "services": list(reversed(data["services"]))}
    assert read_record(shuffled, UTC) == fields
    assert read_record({"staff_id": 4, "client_id": 67890}, UTC).staff_id == 4


def test_numbers_outside_what_yclients_means_are_no_value():
    start = {"datetime": "2024-09-17T15:00:00+00:00"}
    assert read_record({**start, "attendance": "2", "seance_length": "600"}, UTC).attendance == 2
    odd = read_record({**start, "attendance": 7, "seance_length": 10**12, "staff_id": -3, "client_id": True}, UTC)
    assert (odd.attendance, odd.ends_at, odd.staff_id, odd.client_id) == (None, None, None, None)
    assert read_record({**start, "attendance": "нет", "seance_length": -60}, UTC).ends_at is None


@pytest.mark.parametrize(("raw", "phone"), [
    ("8 900 123-45-67", "+79001234567"), ("79001234567", "+79001234567"), ("+7 (900) 123-45-67", "+79001234567"),
    ("не помню", None), ("", None), (None, None),
])
def test_client_phones_are_kept_in_e164(raw, phone):
    assert client_columns({"name": "Ольга", "phone": raw}) == ("Ольга", phone)


def _process(company_id: int, event_type: str, payload: dict[str, Any], source: str = "reference") -> int:
    event_id = insert_event(company_id=company_id, source=source, dedupe_key=f"test:{uuid.uuid4().hex}",
                            type=event_type, payload=payload)
    db.session.commit()
    assert event_id is not None and processing.process_event(event_id).status == EventStatus.PROCESSED
    db.session.rollback()
    return event_id


def _booking(company_id: int, record_id: int) -> Booking:
    return db.session.scalars(
        select(Booking).where(Booking.company_id == company_id, Booking.record_id == record_id)
        .execution_options(populate_existing=True)
    ).one()


def _client(company_id: int, client_id: int) -> Client:
    return db.session.scalars(
        select(Client).where(Client.company_id == company_id, Client.client_id == client_id)
        .execution_options(populate_existing=True)
    ).one()


def _native(salon_id: int, record_id: int, status: str = "create", **data: Any) -> dict[str, Any]:
    return {"company_id": salon_id, "resource": "record", "resource_id": record_id, "status": status,
            "data": {"id": record_id, **data}}


@pytest.mark.parametrize(("timezone", "utc_hour"), [("Asia/Yekaterinburg", 10), ("Europe/Kaliningrad", 13)])
def test_a_booking_is_stored_in_utc_from_the_salon_local_time(ctx, company_factory, timezone, utc_hour):
    made = company_factory(timezone=timezone)
    _process(made.id, "booking_created", {"type": "booking_created",
                                          "data": {"id": 1, "datetime": "2024-09-17T15:00:00"}})
    _process(made.id, "booking_created", _native(made.salon_id, 2, datetime="2024-09-17T15:00:00+03:00",
                                                 date="2024-09-17 15:00:00"), source="yclients")
    assert _booking(made.id, 1).starts_at == datetime(2024, 9, 17, utc_hour, tzinfo=UTC)
    assert _booking(made.id, 2).starts_at == datetime(2024, 9, 17, 12, tzinfo=UTC)  # its own offset wins


def test_a_yclients_record_fills_every_column_and_its_client(ctx, company_factory):
    made = company_factory(timezone="Asia/Yekaterinburg")
    _process(made.id, "booking_created", _native(
        made.salon_id, 55, datetime="2024-09-17T15:00:00+05:00", seance_length=3600, attendance=0,
        staff={"id": 3, "name": "Анна"}, services=[{"id": 2, "title": "Укладка"}, {"id": 1, "title": "Стрижка"}],
        client={"id": 77, "name": "Ольга", "phone": "8 900 123-45-67"},
    ), source="yclients")
    booking, client = _booking(made.id, 55), _client(made.id, 77)
    assert (booking.starts_at, booking.ends_at) == (datetime(2024, 9, 17, 10, tzinfo=UTC),
                                                    datetime(2024, 9, 17, 11, tzinfo=UTC))
    assert (booking.staff_id, booking.staff_name, booking.services, booking.attendance) == (
        3, "Анна", ["Стрижка", "Укладка"], 0)
    assert booking.client_id == client.id
    assert (client.name, client.phone, client.data["phone"]) == ("Ольга", "+79001234567", "8 900 123-45-67")


def test_a_reference_booking_links_its_client_before_the_client_is_heard_of(ctx, company_factory):
    made = company_factory()
    _process(made.id, "booking_created", {"type": "booking_created",
                                          "data": {"id": 12345, "client_id": 67890, "datetime": "2024-09-17T15:00:00"}})
    linked = _booking(made.id, 12345).client_id
    assert linked == _client(made.id, 67890).id and _client(made.id, 67890).phone is None
    _process(made.id, "client_created", {"type": "client_created",
                                         "data": {"id": 67890, "name": "Иван Иванов", "phone": "8 900 123-45-67"}})
    client = _client(made.id, 67890)
    assert (client.id, client.name, client.phone) == (linked, "Иван Иванов", "+79001234567")
    _process(made.id, "booking_updated", {"type": "booking_updated", "data": {
        "id": 12345, "changes": {"client_id": {"old": 67890, "new": 67891}}}})
    assert _booking(made.id, 12345).client_id == _client(made.id, 67891).id != linked


def test_a_client_phone_that_is_no_number_is_none_and_kept_raw(ctx, company_factory):
    made = company_factory()
    _process(made.id, "client_created", {"type": "client_created", "data": {"id": 5, "phone": "спросить у мастера"}})
    client = _client(made.id, 5)
    assert (client.phone, client.data["phone"]) == (None, "спросить у мастера")


def test_an_unreadable_time_leaves_starts_at_empty_and_is_logged(ctx, company_factory, caplog):
    made = company_factory()
    with caplog.at_level(logging.WARNING, logger="services.webhooks.mirror"):
        event_id = _process(made.id, "booking_created", {"type": "booking_created",
                                                         "data": {"id": 9, "datetime": "17 сентября"}})
    assert _booking(made.id, 9).starts_at is None
    assert any(f"webhook event {event_id}" in r.getMessage() and "'17 сентября'" in r.getMessage()
               for r in caplog.records)


def test_a_company_has_a_default_zone_and_refuses_an_unknown_one(ctx, company_factory):
    made = company_factory()
    company = db.session.get(Company, made.id)
    assert company is not None and company.timezone == "Europe/Moscow" and company.zone == ZoneInfo("Europe/Moscow")
    with pytest.raises(ValueError, match="unknown time zone"):
        company.timezone = "Mars/Olympus_Mons"
    company.address = "Екатеринбург, ул. Ленина, 1"
    db.session.commit()
    stored = db.session.get(Company, made.id, populate_existing=True)
    assert stored is not None and stored.address == "Екатеринбург, ул. Ленина, 1"
