"""Booking webhooks plan client messages: each kind once, reminders in the salon's zone, moves re-plan,
cancels drop, status-only changes and bookings nobody can be told about send nothing."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import select

from models import IntegrationStatus, Message, MessageState, db
from services.platform import clock
from services.webhooks import processing
from services.webhooks.ingest import insert_event

NOW = datetime(2026, 9, 10, 12, tzinfo=UTC)


@pytest.fixture
def salon(ctx, company_factory):
    made = company_factory(status=IntegrationStatus.ACTIVE, whatsapp_phone="+79990000000",
                           whatsapp_connected_at=NOW - timedelta(days=30), timezone="Asia/Yekaterinburg",
                           title="Салон Лада", address="Екатеринбург, ул. Ленина, 1")
    clock.set_test_time(NOW)
    yield made
    clock.set_test_time(None)


def record(salon_id: int, record_id: int, changed: str, status: str = "update", **data: Any) -> dict[str, Any]:
    body = {"id": record_id, "datetime": "2026-09-17T15:00:00+05:00", "seance_length": 3600,
            "staff": {"id": 3, "name": "Ольга"}, "services": [{"id": 1, "title": "Стрижка"}],
            "client": {"id": 77, "name": "Анна", "phone": "8 900 123-45-67"}, "attendance": 0,
            "visit_id": 9000 + record_id, "last_change_date": changed, **data}
    return {"company_id": salon_id, "resource": "record", "resource_id": record_id, "status": status, "data": body}


def deliver(company_id: int, payload: dict[str, Any]) -> str:
    kind = {"create": "booking_created", "update": "booking_updated", "delete": "booking_cancelled"}[payload["status"]]
    event_id = insert_event(company_id=company_id, source="yclients", dedupe_key=f"t:{uuid.uuid4().hex}",
                            type=kind, payload=payload)
    db.session.commit()
    assert event_id is not None
    return processing.process_event(event_id).status


def planned(company_id: int) -> dict[str, list[Message]]:
    db.session.expire_all()
    rows = db.session.scalars(select(Message).where(Message.company_id == company_id).order_by(Message.id))
    found: dict[str, list[Message]] = {}
    for row in rows:
        found.setdefault(row.kind, []).append(row)
    return found


def test_a_new_booking_plans_its_announcement_and_reminders_in_the_salons_zone(salon):
    assert deliver(salon.id, record(salon.salon_id, 1, "2026-09-10T16:00:00+05:00", "create")) == "processed"
    found = planned(salon.id)
    assert {kind: [m.due_at for m in rows] for kind, rows in found.items()} == {
        "booking_created": [NOW],
        "confirmation_request": [datetime(2026, 9, 16, 13, tzinfo=UTC)],  # 18:00 in Yekaterinburg, the day before
        "confirmation_reask": [datetime(2026, 9, 17, 5, tzinfo=UTC)],  # 10:00 local on the day
        "reminder": [datetime(2026, 9, 17, 8, tzinfo=UTC)],  # two hours before 15:00 local
    }
    assert all(m.phone == "+79001234567" and m.state == MessageState.PLANNED for rows in found.values() for m in rows)
    assert all(m.expires_at == datetime(2026, 9, 17, 10, tzinfo=UTC) for rows in found.values() for m in rows)


def test_duplicates_and_stale_deliveries_plan_nothing_more(salon):
    deliver(salon.id, record(salon.salon_id, 2, "2026-09-10T16:00:00+05:00", "create"))
    before = {kind: len(rows) for kind, rows in planned(salon.id).items()}
    deliver(salon.id, record(salon.salon_id, 2, "2026-09-10T16:00:00+05:00", "create"))
    deliver(salon.id, record(salon.salon_id, 2, "2026-09-10T15:00:00+05:00", datetime="2026-09-18T11:00:00+05:00"))
    assert {kind: len(rows) for kind, rows in planned(salon.id).items()} == before


def went_out(company_id: int, kind: str) -> None:
    for message in planned(company_id)[kind]:
        message.state, message.sent_at = MessageState.SENT, NOW
    db.session.commit()


def test_a_move_announces_once_and_replans_the_reminders(salon):
    deliver(salon.id, record(salon.salon_id, 3, "2026-09-10T16:00:00+05:00", "create"))
    went_out(salon.id, "booking_created")
    moved = record(salon.salon_id, 3, "2026-09-10T17:00:00+05:00", datetime="2026-09-18T11:00:00+05:00")
    deliver(salon.id, moved)
    deliver(salon.id, moved)  # the same delivery again
    found = planned(salon.id)
    assert len(found["booking_moved"]) == 1
    reminders = found["reminder"]
    assert [(m.state, m.due_at) for m in reminders] == [
        (MessageState.SKIPPED, datetime(2026, 9, 17, 8, tzinfo=UTC)),
        (MessageState.PLANNED, datetime(2026, 9, 18, 4, tzinfo=UTC)),  # 11:00 local minus two hours
    ]
    assert reminders[0].reason == "booking changed"


def test_a_move_before_the_announcement_went_out_is_carried_by_it(salon):
    deliver(salon.id, record(salon.salon_id, 8, "2026-09-10T16:00:00+05:00", "create"))
    deliver(salon.id, record(salon.salon_id, 8, "2026-09-10T17:00:00+05:00", datetime="2026-09-18T11:00:00+05:00"))
    found = planned(salon.id)
    assert "booking_moved" not in found  # the waiting announcement is rendered from the booking as it is then
    assert [m.state for m in found["booking_created"]] == [MessageState.PLANNED]


def test_a_cancel_announces_and_drops_the_reminders(salon):
    deliver(salon.id, record(salon.salon_id, 4, "2026-09-10T16:00:00+05:00", "create"))
    went_out(salon.id, "booking_created")
    deliver(salon.id, record(salon.salon_id, 4, "2026-09-10T17:00:00+05:00", "delete"))
    found = planned(salon.id)
    assert [m.state for m in found["booking_cancelled"]] == [MessageState.PLANNED]
    for kind in ("reminder", "confirmation_request", "confirmation_reask"):
        assert [(m.state, m.reason) for m in found[kind]] == [(MessageState.SKIPPED, "booking cancelled")]


def test_attendance_changes_send_nothing(salon):
    deliver(salon.id, record(salon.salon_id, 5, "2026-09-10T16:00:00+05:00", "create"))
    before = {kind: len(rows) for kind, rows in planned(salon.id).items()}
    deliver(salon.id, record(salon.salon_id, 5, "2026-09-10T17:00:00+05:00", attendance=2))
    deliver(salon.id, record(salon.salon_id, 5, "2026-09-10T18:00:00+05:00", attendance=1))
    assert {kind: len(rows) for kind, rows in planned(salon.id).items()} == before


@pytest.mark.parametrize(
    "data",
    [
        {"datetime": "2026-09-09T15:00:00+05:00"},  # in the past
        {"client": {"id": 78, "name": "Без телефона", "phone": ""}},
        {"client": None},
    ],
)
def test_bookings_nobody_can_be_told_about_plan_nothing(salon, data):
    deliver(salon.id, record(salon.salon_id, 6, "2026-09-10T16:00:00+05:00", "create", **data))
    assert planned(salon.id) == {}


def test_a_salon_that_never_connected_whatsapp_gets_no_messages(ctx, company_factory):
    pending = company_factory()
    clock.set_test_time(NOW)
    deliver(pending.id, record(pending.salon_id, 7, "2026-09-10T16:00:00+05:00", "create"))
    assert planned(pending.id) == {}


def test_replanning_a_salon_restores_missing_reminders_with_each_clients_phone_and_adds_nothing_twice(salon):
    from services.messaging.booking_changes import replan_company

    deliver(salon.id, record(salon.salon_id, 31, "2026-09-10T16:00:00+05:00", "create"))
    other = record(salon.salon_id, 32, "2026-09-10T16:01:00+05:00", "create",
                   client={"id": 78, "name": "Мария", "phone": "8 900 765-43-21"})
    deliver(salon.id, other)
    deliver(salon.id, record(salon.salon_id, 33, "2026-09-10T16:02:00+05:00", "create", client=None))
    for message in planned(salon.id)["reminder"]:
        db.session.delete(message)  # say the salon switched the 2-hour reminder off and on again
    db.session.commit()
    assert replan_company(salon.id) == 2
    db.session.commit()
    reminders = planned(salon.id)["reminder"]
    assert sorted(m.phone for m in reminders) == ["+79001234567", "+79007654321"]
    assert replan_company(salon.id) == 0
