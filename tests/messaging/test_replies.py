"""Replies: «1» confirms in YClients, «2» alerts the salon, anything else is kept, «СТОП» stops it all."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select

from models import (
    Booking,
    Client,
    CompanyEvent,
    InboundMessage,
    IntegrationStatus,
    Message,
    MessageState,
    MessagingSettings,
    OptOut,
    ReplyWrite,
    db,
    utcnow,
)
from services.messaging import attendance, inbound
from services.platform import clock, runtime
from tests.fakes import yclients as fy
from tests.support import wait_until

NOW = datetime(2026, 9, 16, 14, tzinfo=UTC)
STARTS = datetime(2026, 9, 17, 12, tzinfo=UTC)
PHONE = "+79001234567"


@pytest.fixture
def salon(ctx, company_factory, fake_yclients):
    fake_yclients.reset()
    made = company_factory(status=IntegrationStatus.ACTIVE, whatsapp_connected_at=NOW - timedelta(days=1),
                           title="Салон")
    clock.set_test_time(NOW)
    yield made
    clock.set_test_time(None)
    fake_yclients.reset()


def _asked(company_id: int, salon_id: int, fake, record_id: int = 501, kind: str = "confirmation_request") -> Booking:
    """A booking whose client was sent a confirmation request."""
    client = Client(company_id=company_id, client_id=record_id + 1000, name="Анна", phone=PHONE)
    db.session.add(client)
    db.session.flush()
    booking = Booking(company_id=company_id, record_id=record_id, status="active", starts_at=STARTS,
                      staff_name="Ольга", services=["Стрижка"], attendance=0, client_id=client.id,
                      data={"visit_id": 7000 + record_id})
    db.session.add(booking)
    db.session.flush()
    db.session.add(Message(company_id=company_id, booking_id=booking.id, phone=PHONE, kind=kind, slot="s",
                           idempotency_key=f"{company_id}:{booking.id}:{kind}:s", state=MessageState.DELIVERED,
                           priority=1, due_at=NOW, expires_at=STARTS, attempts=1, created_at=NOW, updated_at=NOW,
                           sent_at=NOW - timedelta(hours=1), gateway_message_id=f"out-{record_id}"))
    db.session.commit()
    fake.visit(salon_id, record_id, 7000 + record_id)
    return booking


def _reply(company_id: int, text: str, message_id: str = "in-1", phone: str = PHONE) -> InboundMessage | None:
    found = inbound.receive(company_id, message_id, phone, text, None)
    db.session.commit()
    return db.session.get(InboundMessage, found) if found else None


def _acks(company_id: int, kind: str) -> list[Message]:
    db.session.expire_all()
    return list(db.session.scalars(select(Message).where(Message.company_id == company_id, Message.kind == kind)))


def test_one_confirms_and_yclients_gets_attendance_two(salon, fake_yclients, worker):
    booking = _asked(salon.id, salon.salon_id, fake_yclients)
    row = _reply(salon.id, " 1 ")
    assert row is not None and row.meaning == "confirm" and row.booking_id == booking.id
    assert [m.phone for m in _acks(salon.id, "reply_confirmed")] == [PHONE]
    wait_until(lambda: fake_yclients.attendance.get((7501, 501)) == 2, timeout=20)
    wait_until(lambda: (db.session.expire_all(), db.session.get(InboundMessage, row.id).yclients_write)[1]
               == ReplyWrite.DONE, timeout=10)
    put = [r for r in fake_yclients.requests if r.method == "PUT"][-1]
    assert put.path == "/api/v1/visits/7501/501" and put.body["attendance"] == 2 and put.body["comment"]
    assert put.headers["Authorization"] == f"Bearer {fy.PARTNER_TOKEN}"


@pytest.mark.parametrize("text", ["спасибо, но не приду", "да, но опоздаю", "12", "Да?? Может быть", "👍"])
def test_anything_but_an_exact_answer_is_kept_for_the_salon_and_confirms_nothing(salon, fake_yclients, text):
    _asked(salon.id, salon.salon_id, fake_yclients)
    row = _reply(salon.id, text)
    assert row is not None and row.meaning == "other" and row.yclients_write == ReplyWrite.NONE
    assert _acks(salon.id, "reply_confirmed") == [] and _acks(salon.id, "reply_cancel_noted") == []


def test_a_yes_with_nothing_asked_is_only_kept(salon):
    row = _reply(salon.id, "да")
    assert row is not None and row.meaning == "other" and row.booking_id is None


def test_two_asks_to_cancel_tells_the_salon_and_writes_only_when_enabled(salon, fake_yclients, worker):
    db.session.add(MessagingSettings(company_id=salon.id, disabled_kinds=[], templates={},
                                     contact_phone="+79990001122", cancel_writes_attendance=False))
    db.session.commit()
    _asked(salon.id, salon.salon_id, fake_yclients)
    row = _reply(salon.id, "Нет")
    assert row is not None and row.meaning == "cancel" and row.yclients_write == ReplyWrite.NONE
    assert [m.phone for m in _acks(salon.id, "salon_cancel_alert")] == ["+79990001122"]
    assert [m.phone for m in _acks(salon.id, "reply_cancel_noted")] == [PHONE]
    settings = db.session.get(MessagingSettings, salon.id)
    settings.cancel_writes_attendance = True
    db.session.commit()
    _asked(salon.id, salon.salon_id, fake_yclients, record_id=502)
    second = _reply(salon.id, "2", message_id="in-2")
    assert second is not None and second.yclients_write == ReplyWrite.PENDING
    wait_until(lambda: fake_yclients.attendance.get((7502, 502)) == -1, timeout=20)


def test_a_refused_write_is_retried_then_reported_and_the_reply_kept(salon, fake_yclients, worker):
    _asked(salon.id, salon.salon_id, fake_yclients)
    fake_yclients.script(salon.salon_id, *[fy.unauthorized()] * 10)
    row = _reply(salon.id, "подтверждаю")
    assert row is not None

    def reported() -> bool:
        db.session.expire_all()
        return db.session.get(InboundMessage, row.id).yclients_write == ReplyWrite.FAILED

    wait_until(reported, timeout=60)
    assert db.session.get(InboundMessage, row.id).meaning == "confirm"
    assert db.session.query(CompanyEvent).filter_by(company_id=salon.id, kind="attendance_write_failed").count() == 1


def test_stop_stops_everything_once_and_start_resumes(salon, fake_yclients):
    booking = _asked(salon.id, salon.salon_id, fake_yclients)
    db.session.add(Message(company_id=salon.id, booking_id=booking.id, phone=PHONE, kind="reminder", slot="r",
                           idempotency_key=f"{salon.id}:{booking.id}:reminder:r", state=MessageState.PLANNED,
                           priority=1, due_at=STARTS - timedelta(hours=2), expires_at=STARTS, attempts=0,
                           created_at=NOW, updated_at=NOW))
    db.session.commit()
    _reply(salon.id, "СТОП")
    _reply(salon.id, "стоп", message_id="in-2")
    assert db.session.get(OptOut, (salon.id, PHONE)) is not None
    assert len(_acks(salon.id, "opt_out_ack")) == 1
    assert [(m.state, m.reason) for m in _acks(salon.id, "reminder")] == [(MessageState.SKIPPED,
                                                                           "client opted out (СТОП)")]
    _reply(salon.id, "Старт", message_id="in-3")
    assert db.session.get(OptOut, (salon.id, PHONE)) is None and len(_acks(salon.id, "opt_in_ack")) == 1


def test_the_same_gateway_message_twice_is_one_reply(salon, fake_yclients):
    _asked(salon.id, salon.salon_id, fake_yclients)
    assert _reply(salon.id, "1") is not None
    assert _reply(salon.id, "1") is None
    assert len(_acks(salon.id, "reply_confirmed")) == 1


def test_receipts_move_a_message_forward_only(salon, fake_yclients):
    _asked(salon.id, salon.salon_id, fake_yclients)
    assert inbound.apply_receipt(salon.id, "out-501", "read") is True
    assert inbound.apply_receipt(salon.id, "out-501", "delivered") is False
    assert inbound.apply_receipt(salon.id, "unknown", "read") is False
    db.session.commit()
    [sent] = _acks(salon.id, "confirmation_request")
    assert sent.state == MessageState.READ and sent.read_at is not None


def test_a_write_whose_task_was_lost_is_sent_again_by_the_tick_once_a_lease_overdue(salon, fake_yclients,
                                                                                   monkeypatch):
    sent: list[tuple] = []
    monkeypatch.setattr(attendance, "enqueue", lambda name, *args, **_: sent.append((str(name), args)))
    _asked(salon.id, salon.salon_id, fake_yclients)
    fake_yclients.script(salon.salon_id, fy.unauthorized())
    row = _reply(salon.id, "1")
    assert row is not None and sent == [("messaging.write_attendance", (row.id,))]  # and then lost
    assert attendance.resend_lost() == 0  # not yet a lease overdue: its task may be on its way
    lease = timedelta(seconds=runtime.settings().messaging_sending_lease_seconds)
    row.write_after -= lease
    db.session.commit()
    assert attendance.resend_lost() == 1
    db.session.commit()
    assert sent[1:] == [("messaging.write_attendance", (row.id,))]
    assert attendance.resend_lost() == 0  # due again from the resend on

    delay = attendance.write(row.id)  # refused: the next attempt waits for its backoff, not resent meanwhile
    assert delay is not None and db.session.get(InboundMessage, row.id).write_after > utcnow() + timedelta(
        seconds=delay / 2)
    assert attendance.resend_lost() == 0
    assert attendance.write(row.id) is None
    db.session.expire_all()
    assert db.session.get(InboundMessage, row.id).yclients_write == ReplyWrite.DONE
    assert fake_yclients.attendance.get((7501, 501)) == 2 and attendance.resend_lost() == 0
