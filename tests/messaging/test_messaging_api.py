"""The salon's messaging over REST: settings with inline errors, templates validated and previewed,
the log, replies and numbers; only the salon's own key or the admin key."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import event as sqlalchemy_event

from models import Booking, Client, Company, IntegrationStatus, Message, MessageState, db
from services.messaging import preview
from services.messaging.templates import DEFAULTS, EDITABLE, Kind
from services.platform import clock

NOW = datetime(2026, 9, 10, 12, tzinfo=UTC)


@pytest.fixture
def salon(ctx, company_factory):
    made = company_factory(status=IntegrationStatus.ACTIVE, whatsapp_connected_at=NOW - timedelta(days=1),
                           title="Салон Лада", address="ул. Ленина, 1")
    clock.set_test_time(NOW)
    yield made
    clock.set_test_time(None)


def _url(made, tail: str = "messaging") -> str:
    return f"/marketplace/companies/{made.id}/{tail}"


def _key(made) -> dict[str, str]:
    return {"X-API-Key": made.api_key}


def test_defaults_are_shown_with_every_template_and_placeholder(client, salon):
    body = client.get(_url(salon), headers=_key(salon)).get_json()
    settings = body["settings"]
    assert settings["timezone"] == "Europe/Moscow" and settings["quiet_hours"] == {"start": "21:00", "end": "09:00"}
    assert settings["reminders"] == [{"id": "evening", "kind": "confirmation_request", "day_before_at": "18:00"},
                                     {"id": "2h", "kind": "reminder", "hours_before": 2}]
    assert settings["templates"]["booking_created"]["text"] == DEFAULTS[Kind.BOOKING_CREATED]
    assert settings["templates"]["booking_created"]["customised"] is False
    assert all(settings["enabled"].values()) and "client_name" in settings["placeholders"]


def test_every_bad_field_is_reported_at_once_and_nothing_is_stored(client, salon):
    bad = {"templates": {"booking_created": "Привет, {client_nme}!"}, "quiet_hours": {"start": "25:00", "end": "9"},
           "reminders": [{"hours_before": 100}], "timezone": "Mars/Base", "contact_phone": "12",
           "enabled": {"booking_created": "yes"}, "color": "red"}
    response = client.put(_url(salon), json=bad, headers=_key(salon))
    assert response.status_code == 400
    body = response.get_json()
    assert body["success"] is False and body["error"] == "Некорректные настройки сообщений"
    assert set(body["errors"]) == {"templates.booking_created", "quiet_hours.start", "quiet_hours.end", "reminders[0]",
                                   "timezone", "contact_phone", "enabled", "color"}
    assert "{client_nme}" in body["errors"]["templates.booking_created"]
    again = client.get(_url(salon), headers=_key(salon)).get_json()["settings"]
    assert again["templates"]["booking_created"]["customised"] is False and again["timezone"] == "Europe/Moscow"


def test_a_valid_change_is_stored_and_a_template_can_go_back_to_its_default(client, salon):
    change = {"templates": {"reminder": "{client_name}, ждём вас в {time}! {{без подстановки}}"},
              "enabled": {"booking_moved": False}, "reminders": [{"kind": "confirmation_request",
                                                                "day_before_at": "19:30"}, {"hours_before": 3}],
              "quiet_hours": {"start": "22:00", "end": "08:30"}, "timezone": "Asia/Yekaterinburg",
              "contact_phone": "8 (900) 765-43-21", "cancel_writes_attendance": True}
    saved = client.put(_url(salon), json=change, headers=_key(salon)).get_json()["settings"]
    assert saved["templates"]["reminder"]["customised"] is True
    assert saved["enabled"]["booking_moved"] is False and saved["contact_phone"] == "+79007654321"
    assert saved["reminders"] == [{"id": "d19:30", "kind": "confirmation_request", "day_before_at": "19:30"},
                                  {"id": "h3", "kind": "reminder", "hours_before": 3}]
    assert saved["timezone"] == "Asia/Yekaterinburg" and saved["cancel_writes_attendance"] is True
    reset = client.put(_url(salon), json={"templates": {"reminder": None}}, headers=_key(salon)).get_json()
    assert reset["settings"]["templates"]["reminder"] == {"text": DEFAULTS[Kind.REMINDER],
                                                          "default": DEFAULTS[Kind.REMINDER], "customised": False}


def test_preview_renders_a_sample_or_a_real_booking_and_refuses_unknown_placeholders(client, salon):
    sample = client.post(_url(salon, "messages/preview"), headers=_key(salon),
                         json={"kind": "reminder", "template": "{client_name}: {date}, {weekday}, {time}, {salon}"})
    assert sample.status_code == 200
    assert sample.get_json()["text"] == "Анна: 11 сентября, пятница, 15:00, Салон Лада"
    refused = client.post(_url(salon, "messages/preview"), headers=_key(salon),
                          json={"kind": "reminder", "template": "{clientname}"})
    assert refused.status_code == 400 and "template" in refused.get_json()["errors"]
    for kind in ("nope", {}, ["reminder"], None, 1):
        assert client.post(_url(salon, "messages/preview"), headers=_key(salon),
                           json={"kind": kind}).status_code == 400


def test_all_previews_use_one_lookup_of_the_next_booking(client, salon):
    """The salon page shows every template at once: the next booking is looked up once, not once per kind."""
    person = Client(company_id=salon.id, client_id=77, name="Вера", phone="+79005550011")
    db.session.add(person)
    db.session.flush()
    db.session.add(Booking(company_id=salon.id, record_id=77, status="active", starts_at=NOW + timedelta(days=2),
                           staff_name="Ира", services=["Маникюр"], attendance=0, client_id=person.id))
    db.session.commit()
    company = db.session.get(Company, salon.id)
    selects: list[str] = []

    def record(conn, cursor, statement, parameters, context, executemany):  # noqa: ANN001
        if "FROM bookings" in statement:
            selects.append(statement)

    assert db.engine is not None
    sqlalchemy_event.listen(db.engine, "before_cursor_execute", record)
    try:
        texts = preview.previews(company)
    finally:
        sqlalchemy_event.remove(db.engine, "before_cursor_execute", record)
    assert len(selects) == 1
    assert set(texts) == {kind.value for kind in EDITABLE}
    assert all(texts[kind] == preview.preview(company, kind)["text"] for kind in texts)
    assert "Вера" in texts[Kind.REMINDER.value]


def test_another_companys_key_and_no_key_are_refused(client, salon, company_factory, admin_headers):
    other = company_factory()
    for method, tail in (("get", "messaging"), ("put", "messaging"), ("get", "messages"),
                         ("get", "messages/stats"), ("get", "messages/replies"), ("post", "messages/preview")):
        call = getattr(client, method)
        assert call(_url(salon, tail), headers=_key(other), json={}).status_code == 403
        assert call(_url(salon, tail), json={}).status_code == 401
    assert client.get(_url(salon), headers=admin_headers).status_code == 200
    assert client.get("/marketplace/companies/99999/messaging", headers=admin_headers).status_code == 404


def test_the_log_filters_searches_and_pages(client, salon):
    for n in range(5):
        db.session.add(Message(company_id=salon.id, phone=f"+7900123456{n}", kind="reminder", slot=str(n),
                               idempotency_key=f"{salon.id}:-:reminder:{n}", state=MessageState.SENT if n % 2 else
                               MessageState.FAILED, priority=1, due_at=NOW, expires_at=NOW + timedelta(days=1),
                               attempts=1, created_at=NOW, updated_at=NOW, sent_at=NOW))
    db.session.commit()
    page = client.get(_url(salon, "messages?limit=2"), headers=_key(salon)).get_json()["messages"]
    assert len(page) == 2 and page[0]["id"] > page[1]["id"]
    rest = client.get(_url(salon, f"messages?before_id={page[1]['id']}"), headers=_key(salon)).get_json()["messages"]
    assert len(rest) == 3
    failed = client.get(_url(salon, "messages?state=failed"), headers=_key(salon)).get_json()["messages"]
    assert {m["state"] for m in failed} == {"failed"} and len(failed) == 3
    found = client.get(_url(salon, "messages?q=%2B79001234563"), headers=_key(salon)).get_json()["messages"]
    assert [m["phone"] for m in found] == ["+79001234563"]
    assert client.get(_url(salon, "messages?state=lost"), headers=_key(salon)).status_code == 400
    stats = client.get(_url(salon, "messages/stats?days=7"), headers=_key(salon)).get_json()["stats"]
    assert stats["totals"]["sent"] == 2 and stats["totals"]["failed"] == 3


def test_quiet_hours_switched_off_by_a_salon_that_never_saved_settings_stay_off(client, salon):
    response = client.put(_url(salon), json={"quiet_hours": None}, headers=_key(salon))
    assert response.status_code == 200, response.get_json()
    db.session.expire_all()
    assert client.get(_url(salon), headers=_key(salon)).get_json()["settings"]["quiet_hours"] == \
        {"start": None, "end": None}
