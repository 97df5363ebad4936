"""The whole loop through real processes: YClients webhooks → planner → beat's tick → pacing → the
simulated gateway → receipts and replies back → YClients. Time is the injected test clock.

The stack runs a real worker and beat with fast settings: 120 messages a minute per number (a
0.5 s minimum gap), a short typing time, a tick every half second.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

import pytest
from sqlalchemy import select

from integrations.whatsapp.base import message_key
from models import Message, MessageState, db
from services.platform import clock
from services.whatsapp import gateway
from tests.factories import MadeCompany, make_company, reread_company
from tests.support import wait_until
from tests.whatsapp_stack import Stack, start_stack

MIN_GAP = 0.5
FAST = {"WHATSAPP_MAX_PER_MINUTE": "120", "WHATSAPP_TYPING_MS_PER_CHAR": "2", "WHATSAPP_TYPING_MAX_SECONDS": "0.4",
        "MESSAGING_TICK_SECONDS": "0.5"}
# Wednesday 16 September 2026, 15:00 in Moscow.
NOW = datetime(2026, 9, 16, 12, tzinfo=UTC)
CLIENT = "+79001112233"


@pytest.fixture(scope="module")
def stack(make_app, backends, service_env, run_dir) -> Iterator[Stack]:
    started = start_stack(make_app, backends, service_env, run_dir, beat=True, **FAST)
    yield started
    started.stop()


@pytest.fixture
def live(stack: Stack) -> Iterator[Stack]:
    with stack.at(NOW):
        yield stack
    stack.clean()


def _connected(stack: Stack, **fields: Any) -> MadeCompany:
    """A salon whose WhatsApp is linked through the simulator (QR shown, scanned, callback accepted)."""
    made = make_company(title="Салон Лада", address="Москва, Тверская, 1", **fields)
    assert stack.app.test_client().get(f"/marketplace/qr/{made.token}").status_code == 200
    gateway.simulate_scan(made.id, "+79990000001")
    wait_until(lambda: reread_company(made.id).integration_status == "active", timeout=15)
    return made


def _record(salon_id: int, record_id: int, starts: str, status: str = "create", phone: str = CLIENT,
            **data: Any) -> dict[str, Any]:
    body = {"id": record_id, "datetime": starts, "seance_length": 3600, "staff": {"id": 3, "name": "Ольга"},
            "services": [{"id": 1, "title": "Стрижка"}], "client": {"id": record_id + 50, "name": "Анна",
                                                                  "phone": phone},
            "attendance": 0, "visit_id": 9000 + record_id,
            "last_change_date": f"2026-09-16T15:{record_id % 60:02d}:00+03:00", **data}
    return {"company_id": salon_id, "resource": "record", "resource_id": record_id, "status": status, "data": body}


def _webhook(stack: Stack, made: MadeCompany, payload: dict[str, Any]) -> None:
    url = urlsplit(made.webhook_url)
    response = stack.app.test_client().post(f"{url.path}?{url.query}", json=payload)
    assert response.status_code == 200, response.get_data(as_text=True)


def _messages(company_id: int) -> list[Message]:
    db.session.expire_all()
    return list(db.session.scalars(select(Message).where(Message.company_id == company_id).order_by(Message.id)))


def _of(company_id: int, kind: str) -> list[Message]:
    return [m for m in _messages(company_id) if m.kind == kind]


def _texts(company_id: int, phone: str = CLIENT) -> list[dict[str, Any]]:
    chat = phone.removeprefix("+") + "@c.us"
    sent = gateway.gateway().sent(gateway.session_name(company_id))  # type: ignore[attr-defined]
    return [entry for entry in sent if entry["type"] == "text" and entry["chatId"] == chat]


def test_a_booking_is_announced_once_reminded_in_the_salons_zone_and_confirmed_by_reply(live):
    made = _connected(live)
    live.yclients.visit(made.salon_id, 701, 9701)
    create = _record(made.salon_id, 701, "2026-09-18T15:00:00+03:00")
    _webhook(live, made, create)
    _webhook(live, made, create)  # YClients retries: still one booking, one announcement
    wait_until(lambda: len(_texts(made.id)) == 1, timeout=20)
    [announced] = _of(made.id, "booking_created")
    wait_until(lambda: _of(made.id, "booking_created")[0].state == MessageState.DELIVERED, timeout=10)
    assert _texts(made.id)[0]["text"] == (
        "Анна, вы записаны в Салон Лада: Стрижка, 18 сентября (пятница) в 15:00. Мастер: Ольга.\n"
        "Адрес: Москва, Тверская, 1")
    assert message_key(_texts(made.id)[0]["id"]) == announced.gateway_message_id

    # The evening before, 18:00 Moscow: the confirmation request.
    clock.set_test_time(datetime(2026, 9, 17, 15, 0, 5, tzinfo=UTC))
    wait_until(lambda: len(_texts(made.id)) == 2, timeout=20)
    assert "Ответьте 1" in _texts(made.id)[1]["text"]
    wait_until(lambda: _of(made.id, "confirmation_request")[0].state == MessageState.DELIVERED, timeout=10)

    # The client answers «1»: YClients gets attendance 2, the client a thank-you.
    gateway.simulate_reply(made.id, CLIENT, "1")
    wait_until(lambda: live.yclients.attendance.get((9701, 701)) == 2, timeout=20)
    wait_until(lambda: len(_texts(made.id)) == 3, timeout=20)
    wait_until(lambda: _of(made.id, "reply_confirmed") and _of(made.id, "reply_confirmed")[0].state
               in MessageState.OUT, timeout=10)

    # A webhook delivered again later sends nothing more.
    _webhook(live, made, create)
    clock.set_test_time(datetime(2026, 9, 18, 10, 0, 5, tzinfo=UTC))  # 13:00 Moscow, 2 h before
    wait_until(lambda: len(_texts(made.id)) == 4, timeout=20)
    assert "напоминаем: сегодня в 15:00" in _texts(made.id)[3]["text"]
    assert len(_of(made.id, "booking_created")) == 1


def test_a_reply_that_only_looks_like_yes_is_kept_for_the_salon(live):
    made = _connected(live)
    live.yclients.visit(made.salon_id, 702, 9702)
    _webhook(live, made, _record(made.salon_id, 702, "2026-09-17T12:00:00+03:00"))
    clock.set_test_time(datetime(2026, 9, 16, 15, 0, 5, tzinfo=UTC))  # 18:00 the evening before
    wait_until(lambda: any(m.kind == "confirmation_request" and m.state in MessageState.OUT
                           for m in _messages(made.id)), timeout=20)
    gateway.simulate_reply(made.id, CLIENT, "спасибо, но не приду")
    from models import InboundMessage

    def stored() -> InboundMessage | None:
        db.session.expire_all()
        return db.session.scalars(select(InboundMessage).where(InboundMessage.company_id == made.id)).first()

    row = wait_until(stored, timeout=20)
    assert row.meaning == "other" and row.text == "спасибо, но не приду"
    assert live.yclients.attendance.get((9702, 702)) is None


def test_stop_ends_every_message_to_that_client(live):
    made = _connected(live)
    _webhook(live, made, _record(made.salon_id, 703, "2026-09-18T12:00:00+03:00"))
    wait_until(lambda: len(_texts(made.id)) == 1, timeout=20)
    gateway.simulate_reply(made.id, CLIENT, "СТОП")
    wait_until(lambda: len(_texts(made.id)) == 2, timeout=20)  # the one acknowledgement
    wait_until(lambda: _of(made.id, "opt_out_ack")[0].state in MessageState.OUT, timeout=10)
    reminders = [m for m in _messages(made.id) if m.kind in ("reminder", "confirmation_request")]
    assert reminders and all(m.state == MessageState.SKIPPED for m in reminders)
    _webhook(live, made, _record(made.salon_id, 704, "2026-09-19T12:00:00+03:00"))
    clock.set_test_time(datetime(2026, 9, 19, 8, tzinfo=UTC))
    wait_until(lambda: _of(made.id, "booking_created") and all(
        m.state in (MessageState.SKIPPED, MessageState.EXPIRED) for m in _of(made.id, "booking_created")[1:]),
        timeout=20)
    assert len(_texts(made.id)) == 2


def test_quiet_hours_hold_a_message_until_nine_local(live):
    made = _connected(live, timezone="Asia/Yekaterinburg")
    clock.set_test_time(datetime(2026, 9, 16, 17, tzinfo=UTC))  # 22:00 in Yekaterinburg
    _webhook(live, made, _record(made.salon_id, 705, "2026-09-18T15:00:00+05:00"))
    wait_until(lambda: _of(made.id, "booking_created"), timeout=20)
    [held] = _of(made.id, "booking_created")
    assert held.due_at == datetime(2026, 9, 17, 4, tzinfo=UTC)  # 09:00 local
    clock.set_test_time(datetime(2026, 9, 17, 3, 59, tzinfo=UTC))  # 08:59: still quiet
    slow_tick(live)
    assert _texts(made.id) == []
    clock.set_test_time(datetime(2026, 9, 17, 4, 0, 1, tzinfo=UTC))
    wait_until(lambda: len(_texts(made.id)) == 1, timeout=20)


def slow_tick(stack: Stack) -> None:
    """Let a few of beat's ticks pass."""
    time.sleep(4 * float(FAST["MESSAGING_TICK_SECONDS"]))


def test_twenty_messages_to_one_number_keep_the_pacing(live):
    made = _connected(live)
    for n in range(20):
        _webhook(live, made, _record(made.salon_id, 800 + n, f"2026-09-2{n % 8}T1{n % 9}:00:00+03:00"))
    wait_until(lambda: len(_texts(made.id)) == 20, timeout=60, interval=0.2)
    entries = gateway.gateway().sent(gateway.session_name(made.id))  # type: ignore[attr-defined]
    sends = [e["at"] for e in entries if e["type"] == "text"]
    gaps = [b - a for a, b in zip(sends, sends[1:], strict=False)]
    assert min(gaps) >= MIN_GAP, gaps
    # Typing shows before every text, for a time that grows with the text.
    typing = [e for e in entries if e["type"] == "typing"]
    assert len(typing) == 20 and all(0 < t["seconds"] <= 0.4 for t in typing)


def test_a_number_without_whatsapp_is_skipped_with_its_reason(live):
    made = _connected(live)
    gateway.simulate_absent_number("+79005550000")
    _webhook(live, made, _record(made.salon_id, 706, "2026-09-18T12:00:00+03:00", phone="+79005550000"))
    wait_until(lambda: _of(made.id, "booking_created") and _of(made.id, "booking_created")[0].state
               == MessageState.SKIPPED, timeout=20)
    assert _of(made.id, "booking_created")[0].reason == "number is not on WhatsApp"


def test_messages_wait_while_whatsapp_is_disconnected(live):
    made = _connected(live)
    gateway.simulate_disconnect(made.id, 401)
    wait_until(lambda: reread_company(made.id).integration_status == "disconnected", timeout=15)
    _webhook(live, made, _record(made.salon_id, 707, "2026-09-18T12:00:00+03:00"))
    wait_until(lambda: _of(made.id, "booking_created"), timeout=20)
    status = live.app.test_client().get(f"/marketplace/status/{made.id}",
                                        headers={"Authorization": f"Bearer {made.api_key}"}).get_json()
    assert status["messages_waiting"] >= 1
    assert _of(made.id, "booking_created")[0].state in MessageState.WAITING


def test_the_simulator_cli_answers_as_the_client(live):
    made = _connected(live)
    _webhook(live, made, _record(made.salon_id, 709, "2026-09-18T12:00:00+03:00"))
    wait_until(lambda: _of(made.id, "booking_created") and _of(made.id, "booking_created")[0].state
               == MessageState.DELIVERED, timeout=20)
    [announced] = _of(made.id, "booking_created")
    runner = live.app.test_cli_runner()
    read = runner.invoke(args=["whatsapp", "simulate-ack", str(made.id), str(announced.id), "--ack", "read"])
    assert read.exit_code == 0, read.output
    wait_until(lambda: _of(made.id, "booking_created")[0].state == MessageState.READ, timeout=20)
    replied = runner.invoke(args=["whatsapp", "simulate-reply", str(made.id), CLIENT, "СТОП"])
    assert replied.exit_code == 0 and "received" in replied.output
    wait_until(lambda: _of(made.id, "opt_out_ack"), timeout=20)
    unknown = runner.invoke(args=["whatsapp", "simulate-ack", str(made.id), "999999"])
    assert unknown.exit_code != 0 and "no sent message" in unknown.output


def test_a_move_replans_and_a_stale_delivery_changes_nothing(live):
    made = _connected(live)
    created = _record(made.salon_id, 710, "2026-09-18T15:00:00+03:00", last_change_date="2026-09-16T14:00:00+03:00")
    moved = _record(made.salon_id, 710, "2026-09-19T16:00:00+03:00", status="update",
                    last_change_date="2026-09-16T14:30:00+03:00")
    _webhook(live, made, created)
    wait_until(lambda: len(_texts(made.id)) == 1, timeout=20)
    _webhook(live, made, moved)
    wait_until(lambda: len(_texts(made.id)) == 2, timeout=20)
    assert "19 сентября (суббота) в 16:00" in _texts(made.id)[1]["text"]
    _webhook(live, made, created)  # YClients delivers the older version again, late: nothing changes
    # The evening before the old date: nothing goes.
    clock.set_test_time(datetime(2026, 9, 17, 15, 0, 5, tzinfo=UTC))
    slow_tick(live)
    assert len(_texts(made.id)) == 2
    # The evening before the new date: the confirmation request, for the new time, once.
    clock.set_test_time(datetime(2026, 9, 18, 15, 0, 5, tzinfo=UTC))
    wait_until(lambda: len(_texts(made.id)) == 3, timeout=20)
    assert "19 сентября (суббота) в 16:00" in _texts(made.id)[2]["text"] and "Ответьте 1" in _texts(made.id)[2]["text"]
    slow_tick(live)
    assert len(_texts(made.id)) == 3
    assert len(_of(made.id, "booking_moved")) == 1
