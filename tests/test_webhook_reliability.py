"""Webhooks against the running service and real workers: crashes, a dead broker, duplicates, reordering."""

from __future__ import annotations

import json
import socket
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from flask import Flask
from sqlalchemy import select, text

from models import Booking, EventStatus, WebhookEvent, db
from services.webhooks import admin
from tests.support import ServiceProcess, free_port, wait_until
from tests.support import post as _post
from web.marketplace.webhooks import inbox_writer


def _path(made: Any) -> str:
    return f"/marketplace/webhook/{made.id}?secret={made.webhook_secret}"


def _events(**where: Any) -> list[WebhookEvent]:
    db.session.rollback()
    query = select(WebhookEvent).filter_by(**where).order_by(WebhookEvent.id)
    return list(db.session.scalars(query.execution_options(populate_existing=True)))


def _event(event_id: int) -> WebhookEvent:
    db.session.rollback()
    event = db.session.get(WebhookEvent, event_id, populate_existing=True)
    assert event is not None
    return event


def _processed(event_id: int) -> bool:
    return _event(event_id).status == EventStatus.PROCESSED


def _booking(made: Any, record_id: int) -> Booking | None:
    db.session.rollback()
    query = select(Booking).where(Booking.company_id == made.id, Booking.record_id == record_id)
    return db.session.scalars(query.execution_options(populate_existing=True)).one_or_none()


def _created(record_id: int, created_at: str = "2024-09-16T10:30:00Z", **data: Any) -> bytes:
    return json.dumps({"type": "booking_created", "created_at": created_at, "data": {"id": record_id, **data}}).encode()


def test_the_same_delivery_five_times_has_one_effect(live_server, ctx, company_factory):
    made = company_factory()
    body = _created(101, datetime="2024-09-17T15:00:00")
    with ThreadPoolExecutor(5) as pool:
        answers = list(pool.map(lambda _: _post(live_server, _path(made), body), range(5)))
    assert answers == [(200, {"success": True})] * 5
    [event] = wait_until(lambda: _events(company_id=made.id), timeout=10)
    wait_until(lambda: _processed(event.id), timeout=20)
    assert _event(event.id).attempts == 1
    booking = _booking(made, 101)
    assert booking is not None and booking.last_event_id == event.id


def test_out_of_order_updates_newest_wins(live_server, ctx, company_factory):
    made = company_factory()

    def native(status: str, changed: str, when: str) -> bytes:
        return json.dumps({"company_id": made.salon_id, "resource": "record", "resource_id": 202, "status": status,
                           "data": {"id": 202, "datetime": when, "last_change_date": changed}}).encode()

    for body in (native("update", "2024-09-16 12:00:00", "2024-09-20 10:00:00"),
                 native("update", "2024-09-16 11:00:00", "2024-09-19 10:00:00"),
                 native("create", "2024-09-16 10:00:00", "2024-09-18 10:00:00")):
        assert _post(live_server, _path(made), body) == (200, {"success": True})
    wait_until(lambda: len(_events(company_id=made.id, status=EventStatus.PROCESSED)) == 3, timeout=20)
    booking = _booking(made, 202)
    assert booking is not None and booking.starts_at == datetime(2024, 9, 20, 10, tzinfo=ZoneInfo("Europe/Moscow"))


def test_garbage_is_acknowledged_stored_as_rejected_and_never_a_5xx(live_server, ctx, company_factory):
    made = company_factory()
    bodies = [b"", b"garbage", b"\x00\xff" * 100, b"[]", b'{"type": "booking_created"}', b'{"a": NaN}',
              b"{" * 50_000, json.dumps({"type": "x", "data": {"pad": "y" * 300_000}}).encode()]
    answers = [_post(live_server, _path(made), body) for body in bodies]
    # No Content-Length at all: the size limit holds for a chunked body too.
    answers.append(_post(live_server, _path(made), b"{" + b" " * 400_000 + b"}", chunked=True))
    answers.append(_post(live_server, f"/marketplace/webhook/{made.id}?secret=nope", _created(1)))
    answers.append(_post(live_server, "/marketplace/webhook/99999999?secret=nope", _created(1)))
    assert answers == [(200, {"success": True})] * len(answers)
    events = _events()
    assert len(events) == len(answers) and {e.status for e in events} == {EventStatus.REJECTED}
    reasons = [e.reject_reason or "" for e in events]
    assert reasons[-3:] == ["body too large", "invalid webhook secret", "unknown company"]
    assert reasons.count("body too large") == 2 and all(reasons)


def test_broker_down_during_ingestion_then_the_sweep_delivers(make_app, app, ctx, company_factory, worker):
    down = make_app(redis_url=f"redis://127.0.0.1:{free_port()}/0")
    made = company_factory()
    with down.test_client() as c:
        response = c.post(_path(made), data=_created(303), content_type="application/json")
    assert response.status_code == 200 and response.get_json() == {"success": True}
    [event] = _events(company_id=made.id)
    assert event.status == EventStatus.RECEIVED
    # The broker is back: beat's sweep task (run here on demand) finds the stored event.
    app.extensions["celery"].send_task("webhooks.sweep", kwargs={"received_older_than": 0})
    wait_until(lambda: _processed(event.id), timeout=20)
    assert _booking(made, 303) is not None and _event(event.id).attempts == 1


def _hostname(proc: ServiceProcess) -> str:
    return proc.command[proc.command.index("--hostname") + 1].replace("%h", socket.gethostname())


@contextmanager
def _only_consumer(app: Flask, proc: ServiceProcess) -> Iterator[None]:
    """Make ``proc`` the only worker consuming the task queues while the block runs."""
    celery = app.extensions["celery"]
    control, queues = celery.control, [queue.name for queue in celery.conf.task_queues]
    mine = _hostname(proc)
    others = wait_until(lambda: (lambda names: mine in names and [n for n in names if n != mine])(
        [name for reply in control.ping(timeout=1) or [] for name in reply]) or None, timeout=30, interval=0.2)
    others = others if isinstance(others, list) else []
    for queue in queues if others else []:
        control.cancel_consumer(queue, destination=others, reply=True, timeout=5)
    try:
        yield
    finally:
        for queue in queues if others else []:
            control.add_consumer(queue, destination=others, reply=True, timeout=5)


@contextmanager
def _bookings_locked() -> Iterator[None]:
    """Hold a lock that stops any worker in the middle of writing the booking mirror."""
    assert db.engine is not None
    conn = db.engine.connect()
    conn.execute(text("LOCK TABLE bookings IN SHARE MODE"))
    try:
        yield
    finally:
        conn.rollback()
        conn.close()


def test_worker_killed_mid_task_then_the_event_is_processed_after_restart(
    app, ctx, company_factory, worker_factory: Callable[..., ServiceProcess], backends
):
    if not backends.is_postgres:
        pytest.skip("stopping a worker mid-task needs a table lock that leaves the inbox writable (PostgreSQL)")
    made = company_factory()
    crashing = worker_factory(concurrency=1, WEBHOOK_PROCESSING_TIMEOUT_SECONDS="2")
    with _only_consumer(app, crashing):
        with _bookings_locked():
            received = inbox_writer(app).submit(made.id, made.webhook_secret,
                                                _created(404, datetime="2024-09-17T15:00:00"), None)
            assert received.outcome == "accepted" and received.event_id is not None
            event_id = received.event_id
            # Claimed, then stuck on the lock in the middle of the task.
            wait_until(lambda: _event(event_id).status == EventStatus.PROCESSING, timeout=20)
            crashing.kill()
        crashing.start()

        def recovered() -> bool:
            if _processed(event_id):
                return True
            admin.sweep(received_older_than=0)  # what beat does every few seconds
            return False

        wait_until(recovered, timeout=60, interval=0.5)
    crashing.stop()
    event = _event(event_id)
    assert event.status == EventStatus.PROCESSED and event.attempts == 2
    booking = _booking(made, 404)
    assert booking is not None and booking.last_event_id == event_id


def test_a_concurrent_burst_is_stored_and_processed_once_each(live_server, ctx, company_factory):
    """Deliveries that share one group commit: new, repeated and unauthenticated ones side by side."""
    made = company_factory()
    bodies = [_created(3000 + n % 40, datetime="2024-09-17T15:00:00") for n in range(80)]  # each twice
    bad_path = f"/marketplace/webhook/{made.id}?secret=wrong"
    requests = [(_path(made), body) for body in bodies] + [(bad_path, _created(9999))] * 10
    with ThreadPoolExecutor(24) as pool:
        answers = list(pool.map(lambda r: _post(live_server, r[0], r[1]), requests))
    assert answers == [(200, {"success": True})] * len(requests)
    events = _events(company_id=made.id)
    accepted = [e for e in events if e.status != EventStatus.REJECTED]
    assert len(accepted) == 40 and len(events) == 50
    wait_until(lambda: len(_events(company_id=made.id, status=EventStatus.PROCESSED)) == 40, timeout=30)
    assert {e.attempts for e in _events(company_id=made.id, status=EventStatus.PROCESSED)} == {1}
    assert all(_booking(made, 3000 + n) is not None for n in range(40))
