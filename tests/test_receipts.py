"""Gateway receipts of our messages are kept and applied in batches: one task a moment, one transaction a batch."""

from __future__ import annotations

import logging
import time
from datetime import UTC, datetime, timedelta

from sqlalchemy import select

from models import IntegrationStatus, Message, MessageState, db
from services.platform import runtime
from services.whatsapp import gateway, receipts, session_events

NOW = datetime(2026, 9, 10, 12, tzinfo=UTC)


def _salon_with_sent(company_factory, count: int) -> int:
    """A salon with ``count`` messages sent (not yet delivered); its id."""
    company_id = company_factory(status=IntegrationStatus.ACTIVE, whatsapp_connected_at=NOW).id
    for n in range(count):
        db.session.add(Message(company_id=company_id, phone=f"+7900123450{n}", kind="reminder", slot=str(n),
                               idempotency_key=f"{company_id}:-:reminder:{n}", state=MessageState.SENT, priority=1,
                               due_at=NOW, expires_at=NOW + timedelta(days=1), attempts=1, created_at=NOW,
                               updated_at=NOW, sent_at=NOW, gateway_message_id=f"3EB0{n}"))
    db.session.commit()
    return company_id


def _ack(company_id: int, n: int, ack: int = 2) -> dict:
    return {"event": "message.ack", "session": gateway.session_name(company_id), "company_id": company_id,
            "payload": {"id": f"true_7900123450{n}@c.us_3EB0{n}", "ack": ack, "fromMe": True}}


def _states(company_id: int) -> list[str]:
    db.session.expire_all()
    return list(db.session.scalars(select(Message.state).where(Message.company_id == company_id).order_by(Message.id)))


def test_receipts_wait_for_one_scheduled_run_that_applies_them_all(ctx, company_factory):
    company_id = _salon_with_sent(company_factory, 3)
    for n in range(3):
        gateway.deliver_event(_ack(company_id, n))
    gateway.deliver_event(_ack(company_id, 0, ack=3))
    assert receipts.schedule() is False  # the first receipt scheduled the run; the others joined it
    assert _states(company_id) == [MessageState.SENT] * 3
    assert receipts.apply_waiting(session_events.handle_event) == 4
    assert _states(company_id) == [MessageState.READ, MessageState.DELIVERED, MessageState.DELIVERED]
    assert runtime.redis().llen(runtime.settings().key("whatsapp", "receipts")) == 0
    assert receipts.apply_waiting(session_events.handle_event) == 0


def test_a_receipt_that_cannot_be_applied_is_logged_and_the_others_still_are(ctx, company_factory, caplog):
    company_id = _salon_with_sent(company_factory, 2)
    for n in range(2):
        receipts.add(_ack(company_id, n))

    def handle(event: dict) -> object:
        if event["payload"]["id"].endswith("3EB00"):
            raise RuntimeError("broken")
        return session_events.handle_event(event)

    with caplog.at_level(logging.ERROR):
        assert receipts.apply_waiting(handle) == 2
    assert _states(company_id) == [MessageState.SENT, MessageState.DELIVERED]
    assert any("receipt" in r.getMessage() for r in caplog.records)


def test_a_run_killed_holding_the_lock_holds_the_receipts_back_only_until_the_lock_expires(ctx, company_factory,
                                                                                            monkeypatch):
    company_id = _salon_with_sent(company_factory, 2)
    monkeypatch.setattr(receipts, "enqueue", lambda *a, **k: None)
    for n in range(2):
        receipts.add(_ack(company_id, n))
    redis, lock = runtime.redis(), runtime.settings().key("whatsapp", "receipts", "lock")
    redis.set(lock, "a run SIGKILLed mid-batch", px=int(receipts.LOCK_SECONDS * 1000))
    assert receipts.apply_waiting(session_events.handle_event) == 0  # scheduled again, nothing lost
    assert 0 < redis.pttl(lock) <= receipts.LOCK_SECONDS * 1000
    redis.pexpire(lock, 1)  # the dead run's lock expires
    time.sleep(0.01)
    assert receipts.apply_waiting(session_events.handle_event) == 2
    assert _states(company_id) == [MessageState.DELIVERED] * 2


def test_a_run_that_outlived_its_lock_leaves_the_list_to_the_run_that_took_over(ctx, company_factory, monkeypatch):
    company_id = _salon_with_sent(company_factory, 3)
    monkeypatch.setattr(receipts, "enqueue", lambda *a, **k: None)
    monkeypatch.setattr(receipts, "BATCH", 2)
    for n in range(3):
        receipts.add(_ack(company_id, n))
    redis, lock = runtime.redis(), runtime.settings().key("whatsapp", "receipts", "lock")

    def slow(event: dict) -> object:
        redis.set(lock, "the run that took over")  # this run's lock expired while it worked
        return session_events.handle_event(event)

    assert receipts.apply_waiting(slow) == 0  # its batch applied, not trimmed: the other run trims it
    assert redis.llen(runtime.settings().key("whatsapp", "receipts")) == 3
    assert redis.get(lock) == b"the run that took over"  # not released by the run that lost it
    redis.delete(lock)
    assert receipts.apply_waiting(session_events.handle_event) == 3
    assert _states(company_id) == [MessageState.DELIVERED] * 3
