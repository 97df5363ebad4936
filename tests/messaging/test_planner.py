"""The planner: what each booking change sends and when, in the salon's own time zone."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from services.messaging.planner import Rules, Visit, in_quiet_hours, out_of_quiet_hours, plan
from services.messaging.templates import Kind
from services.webhooks.changes import ChangeKind

PHONE = "+79001234567"


def _visit(starts_at: datetime | None, phone: str | None = PHONE, cancelled: bool = False) -> Visit:
    return Visit(starts_at=starts_at, cancelled=cancelled, client_phone=phone)


def _kinds(result) -> dict[Kind, datetime]:
    return {m.kind: m.due_at for m in result.messages}


@pytest.mark.parametrize(
    ("zone", "evening_utc", "two_hours_utc", "reask_utc"),
    [
        # 15:00 local on 17 September; 18:00 local the day before; 10:00 local on the day.
        ("Asia/Yekaterinburg", datetime(2026, 9, 16, 13, tzinfo=UTC), datetime(2026, 9, 17, 8, tzinfo=UTC),
         datetime(2026, 9, 17, 5, tzinfo=UTC)),
        ("Europe/Kaliningrad", datetime(2026, 9, 16, 16, tzinfo=UTC), datetime(2026, 9, 17, 11, tzinfo=UTC),
         datetime(2026, 9, 17, 8, tzinfo=UTC)),
    ],
)
def test_reminders_are_computed_in_the_salons_time_zone(zone, evening_utc, two_hours_utc, reask_utc):
    starts = datetime(2026, 9, 17, 15, tzinfo=ZoneInfo(zone))
    now = datetime(2026, 9, 10, 9, tzinfo=UTC)
    result = plan(ChangeKind.CREATED, None, _visit(starts), Rules(timezone=zone), now, "e1")
    due = _kinds(result)
    assert due[Kind.BOOKING_CREATED] == now
    assert due[Kind.CONFIRMATION_REQUEST] == evening_utc
    assert due[Kind.REMINDER] == two_hours_utc
    assert due[Kind.CONFIRMATION_REASK] == reask_utc
    assert all(m.expires_at == starts for m in result.messages)


def test_quiet_hours_hold_a_message_until_nine_local_or_drop_it_when_too_late():
    rules = Rules(timezone="Europe/Moscow")
    zone = ZoneInfo("Europe/Moscow")
    late_evening = datetime(2026, 9, 16, 23, 30, tzinfo=zone)
    assert in_quiet_hours(late_evening, rules) and not in_quiet_hours(late_evening.replace(hour=12), rules)
    assert out_of_quiet_hours(late_evening, rules) == datetime(2026, 9, 17, 9, tzinfo=zone)
    assert out_of_quiet_hours(datetime(2026, 9, 17, 7, tzinfo=zone), rules) == datetime(2026, 9, 17, 9, tzinfo=zone)
    # Booked at 23:30 for 12:00 tomorrow: the confirmation waits for 09:00, the 2 h reminder is at 10:00.
    result = plan(ChangeKind.CREATED, None, _visit(datetime(2026, 9, 17, 12, tzinfo=zone)), rules, late_evening, "e1")
    due = _kinds(result)
    assert due[Kind.BOOKING_CREATED] == datetime(2026, 9, 17, 9, tzinfo=zone)
    assert due[Kind.REMINDER] == datetime(2026, 9, 17, 10, tzinfo=zone)
    # Booked at 23:30 for 08:30 tomorrow: by 09:00 the visit has started, so nothing waits for the window.
    early = plan(ChangeKind.CREATED, None, _visit(datetime(2026, 9, 17, 8, 30, tzinfo=zone)), rules, late_evening, "e1")
    assert Kind.BOOKING_CREATED not in _kinds(early) and Kind.REMINDER not in _kinds(early)


def test_a_move_announces_once_per_change_and_replans_reminders():
    zone = ZoneInfo("Europe/Moscow")
    now = datetime(2026, 9, 10, 12, tzinfo=zone)
    old = _visit(datetime(2026, 9, 17, 15, tzinfo=zone))
    new = _visit(datetime(2026, 9, 18, 11, tzinfo=zone))
    first = plan(ChangeKind.MOVED, old, new, Rules(), now, "e7")
    again = plan(ChangeKind.MOVED, old, new, Rules(), now, "e7")
    assert first == again  # the same change plans the same messages (and so the same keys)
    moved = [m for m in first.messages if m.kind is Kind.BOOKING_MOVED]
    assert [m.slot for m in moved] == ["e7"]
    assert all("2026-09-18T11:00:00+03:00" in slot for _kind, slot in first.reminders)
    before = plan(ChangeKind.CREATED, None, old, Rules(), now, "e6")
    assert not before.reminders & first.reminders  # the old reminders are not kept


def test_cancel_announces_and_keeps_no_reminders():
    zone = ZoneInfo("Europe/Moscow")
    now = datetime(2026, 9, 10, 12, tzinfo=zone)
    booked = _visit(datetime(2026, 9, 17, 15, tzinfo=zone))
    result = plan(ChangeKind.CANCELLED, booked, _visit(booked.starts_at, cancelled=True), Rules(), now, "e9")
    assert [m.kind for m in result.messages] == [Kind.BOOKING_CANCELLED]
    assert result.reminders == frozenset()


@pytest.mark.parametrize(
    ("visit", "reason"),
    [
        (_visit(datetime(2026, 9, 10, 11, tzinfo=UTC)), "visit in the past"),
        (_visit(datetime(2026, 9, 17, 11, tzinfo=UTC), phone=None), "no client phone"),
        (_visit(None), "no visit time"),
    ],
)
def test_nothing_is_planned_without_a_future_visit_and_a_phone(visit, reason):
    result = plan(ChangeKind.CREATED, None, visit, Rules(), datetime(2026, 9, 10, 12, tzinfo=UTC), "e1")
    assert result.messages == () and result.skipped == reason


def test_reminders_already_past_at_booking_time_are_not_sent_late():
    zone = ZoneInfo("Europe/Moscow")
    starts = datetime(2026, 9, 17, 15, tzinfo=zone)
    booked_an_hour_before = plan(ChangeKind.CREATED, None, _visit(starts), Rules(), starts - timedelta(hours=1), "e1")
    assert set(_kinds(booked_an_hour_before)) == {Kind.BOOKING_CREATED}


def test_switched_off_kinds_are_not_planned_and_status_changes_send_nothing_new():
    zone = ZoneInfo("Europe/Moscow")
    now = datetime(2026, 9, 10, 12, tzinfo=zone)
    booked = _visit(datetime(2026, 9, 17, 15, tzinfo=zone))
    rules = Rules(enabled=frozenset({Kind.REMINDER}))
    assert set(_kinds(plan(ChangeKind.CREATED, None, booked, rules, now, "e1"))) == {Kind.REMINDER}
    confirmed = plan(ChangeKind.STATUS, booked, booked, Rules(), now, "e2")
    assert {m.kind for m in confirmed.messages} == {Kind.REMINDER, Kind.CONFIRMATION_REQUEST, Kind.CONFIRMATION_REASK}
    no_reask = plan(ChangeKind.STATUS, booked, booked, Rules(reask_at=None), now, "e2")
    assert Kind.CONFIRMATION_REASK not in _kinds(no_reask)


def test_an_announcement_still_waiting_absorbs_a_move_and_a_cancel_makes_it_pointless():
    zone = ZoneInfo("Europe/Moscow")
    now = datetime(2026, 9, 10, 23, tzinfo=zone)  # quiet hours: the "booked" message waits for 09:00
    old = _visit(datetime(2026, 9, 17, 15, tzinfo=zone))
    new = _visit(datetime(2026, 9, 18, 11, tzinfo=zone))
    waiting = frozenset({Kind.BOOKING_CREATED})
    moved = plan(ChangeKind.MOVED, old, new, Rules(), now, "e2", waiting=waiting)
    assert Kind.BOOKING_MOVED not in _kinds(moved)  # the waiting message will carry the new time
    assert moved.supersedes == frozenset({Kind.BOOKING_MOVED})
    cancelled = plan(ChangeKind.CANCELLED, new, _visit(new.starts_at, cancelled=True), Rules(), now, "e3",
                     waiting=waiting)
    assert cancelled.messages == ()
    assert cancelled.supersedes == frozenset({Kind.BOOKING_CREATED, Kind.BOOKING_MOVED})
    told = plan(ChangeKind.CANCELLED, new, _visit(new.starts_at, cancelled=True), Rules(), now, "e3")
    assert [m.kind for m in told.messages] == [Kind.BOOKING_CANCELLED]
