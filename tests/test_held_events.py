"""A gateway event is held until its task applied it: a task message lost with a killed worker (Celery's
Redis transport pops a message before it records it as unacknowledged) is sent again by the sweep."""

from __future__ import annotations

import time

import pytest
from sqlalchemy import func, select

from models import InboundMessage, IntegrationStatus, db
from services.platform import jobs, runtime
from services.whatsapp import gateway, held_events, receipts
from tasks import whatsapp as whatsapp_tasks


@pytest.fixture
def lost(monkeypatch):
    """Task messages sent by the gateway layer and the sweep, recorded and never delivered."""
    sent: list[tuple[str, tuple]] = []

    def record(name, *args, **_options):
        sent.append((str(name), args))

    monkeypatch.setattr(gateway, "enqueue", record)
    monkeypatch.setattr(whatsapp_tasks, "enqueue", record)
    return sent


def _reply(company_id: int, key: str = "3A0001") -> dict:
    return {"id": "evt_" + key, "event": "message", "session": gateway.session_name(company_id),
            "company_id": company_id, "payload": {"id": f"false_79001234567@c.us_{key}", "from": "79001234567@c.us",
                                                  "fromMe": False, "body": "1", "timestamp": int(time.time())}}


def _replies(company_id: int) -> int:
    db.session.rollback()
    return db.session.scalar(select(func.count()).select_from(InboundMessage).where(
        InboundMessage.company_id == company_id))


def _age(seconds: float) -> None:
    """Make every held event look sent ``seconds`` ago."""
    redis, key = runtime.redis(), runtime.settings().key("whatsapp", "held_events")
    for parcel_id in redis.zrange(key, 0, -1):
        redis.zadd(key, {parcel_id: time.time() - seconds})


def test_a_reply_whose_task_was_lost_is_sent_again_after_the_grace_and_stored_once(ctx, company_factory, lost):
    company_id = company_factory(status=IntegrationStatus.ACTIVE).id
    gateway.deliver_event(_reply(company_id))
    [(name, (parcel_id,))] = lost
    assert name == "whatsapp.handle_event" and held_events.held() == 1

    assert whatsapp_tasks.events_sweep.run() == 0  # within the grace: the task may still be on its way
    _age(jobs.LOST_AFTER_SECONDS + 1)
    assert whatsapp_tasks.events_sweep.run() == 1
    assert lost[1] == ("whatsapp.handle_event", (parcel_id,))
    assert whatsapp_tasks.events_sweep.run() == 0  # held again from the sweep on: sent once a grace period

    assert whatsapp_tasks.handle_event.run(parcel_id) == "message"
    assert _replies(company_id) == 1 and held_events.held() == 0
    assert whatsapp_tasks.handle_event.run(parcel_id) == "message"  # the first message after all: nothing twice
    assert _replies(company_id) == 1 and held_events.held() == 0


def test_an_event_stays_held_while_its_task_fails_and_is_released_once_applied(ctx, company_factory, lost,
                                                                               monkeypatch):
    company_id = company_factory(status=IntegrationStatus.ACTIVE).id
    gateway.deliver_event(_reply(company_id, "3A0002"))
    [(_, (parcel_id,))] = lost

    def database_away(_event):
        raise ConnectionError("the database is away")

    with monkeypatch.context() as patch:
        patch.setattr(whatsapp_tasks.session_events, "handle_event", database_away)
        with pytest.raises(ConnectionError):
            whatsapp_tasks.handle_event.run(parcel_id)
    db.session.rollback()
    assert held_events.held() == 1 and _replies(company_id) == 0
    assert whatsapp_tasks.handle_event.run(parcel_id) == "message"
    assert held_events.held() == 0 and _replies(company_id) == 1


def test_an_event_whose_parcel_expired_is_released(ctx, lost):
    parcel_id = held_events.hold({"event": "session.status"})
    runtime.redis().delete(runtime.settings().key("parcel", parcel_id))
    assert whatsapp_tasks.handle_event.run(parcel_id) == "expired"
    assert held_events.held() == 0


def test_receipts_left_waiting_without_a_scheduled_run_get_one_from_the_sweep(ctx, monkeypatch):
    scheduled: list[str] = []
    monkeypatch.setattr(receipts, "enqueue", lambda name, *a, **k: scheduled.append(str(name)))
    assert receipts.resume() is False  # nothing waiting
    receipts.add({"event": "message.ack", "company_id": 1, "payload": {"id": "true_7@c.us_A", "ack": 2}})
    assert scheduled == ["whatsapp.apply_receipts"]
    assert receipts.resume() is False  # its run is scheduled
    runtime.redis().delete(runtime.settings().key("whatsapp", "receipts", "scheduled"))  # that run was lost
    assert receipts.resume() is True
    assert scheduled == ["whatsapp.apply_receipts"] * 2
