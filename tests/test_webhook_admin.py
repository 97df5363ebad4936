"""Operator tools: list failed/dead events, replay them (endpoint and CLI), counts by status."""

from __future__ import annotations

import re
import uuid
from datetime import timedelta

import pytest
from sqlalchemy import select

from models import Booking, EventStatus, WebhookEvent, db, utcnow
from services.platform import jobs
from services.platform.jobs import Job
from services.webhooks import admin
from services.webhooks.ingest import insert_event
from tests.support import wait_until
from web.cli_webhooks import webhooks_cli


def _event(company_id: int, status: str, record_id: int = 1, error: str | None = None) -> int:
    event_id = insert_event(
        company_id=company_id, source="reference", dedupe_key=f"t:{uuid.uuid4().hex}", type="booking_created",
        payload={"type": "booking_created", "data": {"id": record_id}}, status=status, attempts=8, last_error=error,
    )
    db.session.commit()
    assert event_id is not None
    return event_id


def _status(event_id: int) -> str:
    db.session.rollback()
    return db.session.scalars(select(WebhookEvent.status).where(WebhookEvent.id == event_id)).one()


@pytest.mark.parametrize(
    ("method", "path"),
    [("get", "/marketplace/admin/webhooks"), ("post", "/marketplace/admin/webhooks/replay"),
     ("get", "/marketplace/admin/webhooks/stats")],
)
def test_admin_endpoints_need_the_admin_key(client, company_factory, method, path):
    made = company_factory()
    assert getattr(client, method)(path, json={}).status_code == 401
    assert getattr(client, method)(path, json={}, headers={"X-API-Key": made.api_key}).status_code == 401


def test_list_filters_by_status(client, company_factory, admin_headers):
    made = company_factory()
    dead = _event(made.id, EventStatus.DEAD, error="boom")
    _event(made.id, EventStatus.PROCESSED)
    body = client.get("/marketplace/admin/webhooks?status=dead", headers=admin_headers).get_json()
    assert body["success"] is True and [e["id"] for e in body["events"]] == [dead]
    assert body["events"][0]["last_error"] == "boom" and "payload" not in body["events"][0]
    every = client.get("/marketplace/admin/webhooks?payload=1&limit=10", headers=admin_headers).get_json()
    assert len(every["events"]) == 2 and every["events"][0]["payload"]["type"] == "booking_created"
    bad = client.get("/marketplace/admin/webhooks?status=nope", headers=admin_headers)
    assert bad.status_code == 400 and bad.get_json()["success"] is False


def test_stats_count_every_status(client, company_factory, admin_headers):
    made = company_factory()
    _event(made.id, EventStatus.DEAD)
    _event(made.id, EventStatus.DEAD)
    _event(made.id, EventStatus.REJECTED)
    body = client.get("/marketplace/admin/webhooks/stats", headers=admin_headers).get_json()
    assert body["by_status"] == {**dict.fromkeys(EventStatus.ALL, 0), "dead": 2, "rejected": 1}


def test_replay_by_id_processes_dead_events_once(client, company_factory, admin_headers, worker):
    made = company_factory()
    dead = _event(made.id, EventStatus.DEAD, record_id=42)
    processed = _event(made.id, EventStatus.PROCESSED)
    response = client.post("/marketplace/admin/webhooks/replay", json={"ids": [dead, processed]}, headers=admin_headers)
    assert response.status_code == 200
    assert response.get_json() == {"success": True, "replayed": [dead], "skipped": [processed]}
    wait_until(lambda: _status(dead) == EventStatus.PROCESSED, timeout=20)
    assert db.session.scalars(select(Booking.record_id).where(Booking.company_id == made.id)).all() == [42]
    assert _status(processed) == EventStatus.PROCESSED


def test_replay_by_status_and_validation(client, company_factory, admin_headers, worker):
    made = company_factory()
    failed = [_event(made.id, EventStatus.FAILED, record_id=i) for i in range(1, 4)]  # YClients ids start at 1
    dead = _event(made.id, EventStatus.DEAD)
    body = client.post("/marketplace/admin/webhooks/replay", json={"status": "failed"}, headers=admin_headers)
    assert body.get_json()["replayed"] == failed
    assert _status(dead) == EventStatus.DEAD
    wait_until(lambda: all(_status(i) == EventStatus.PROCESSED for i in failed), timeout=20)
    for bad in ({}, {"status": "processed"}, {"ids": ["1"]}, []):
        response = client.post("/marketplace/admin/webhooks/replay", json=bad, headers=admin_headers)
        assert response.status_code == 400 and response.get_json()["success"] is False


def test_cli_lists_and_replays(app, company_factory, worker):
    made = company_factory()
    dead = _event(made.id, EventStatus.DEAD, error="ValueError: nope")
    runner = app.test_cli_runner()
    listed = runner.invoke(webhooks_cli, ["list", "--status", "dead"])
    assert listed.exit_code == 0 and f"{dead}\tdead\tbooking_created" in listed.output and "nope" in listed.output
    stats = runner.invoke(webhooks_cli, ["stats"])
    assert stats.exit_code == 0 and "dead\t1" in stats.output
    replayed = runner.invoke(webhooks_cli, ["replay", str(dead), "999999"])
    assert replayed.exit_code == 0, replayed.output
    assert f"replayed: {dead}" in replayed.output and "skipped (not failed or dead): 999999" in replayed.output
    wait_until(lambda: _status(dead) == EventStatus.PROCESSED, timeout=20)
    assert runner.invoke(webhooks_cli, ["replay"]).exit_code != 0
    assert runner.invoke(webhooks_cli, ["list", "--status", "nope"]).exit_code != 0


def test_cli_is_registered_on_the_app(app):
    assert app.cli.get_command(None, "webhooks") is webhooks_cli  # type: ignore[arg-type]


def test_replay_of_nothing_is_an_error(ctx):
    with pytest.raises(Exception, match="give event ids or a status"):
        admin.replay()


def test_admin_listing_writes_dates_as_the_reference_does(client, company_factory, admin_headers):
    made = company_factory()
    _event(made.id, EventStatus.DEAD)
    [listed] = client.get("/marketplace/admin/webhooks", headers=admin_headers).get_json()["events"]
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", listed["received_at"])


def test_the_sweep_leaves_received_events_to_a_waiting_backlog_and_sends_them_in_batches_once_it_is_gone(
        ctx, company_factory, monkeypatch):
    made = company_factory()
    received = [_event(made.id, EventStatus.RECEIVED, record_id=n) for n in range(250)]
    dead_worker = _event(made.id, EventStatus.PROCESSING)  # its lease (next_attempt_at unset) long past
    db.session.execute(WebhookEvent.__table__.update().where(WebhookEvent.id == dead_worker)
                       .values(next_attempt_at=utcnow() - timedelta(minutes=5)))
    db.session.commit()
    sent: list[list[int]] = []
    monkeypatch.setattr(admin, "try_enqueue", lambda name, ids: name == "webhooks.process_batch" and
                        (sent.append(ids) or True))

    monkeypatch.setattr(admin, "waiting", lambda _job: 40)  # webhook tasks wait in their queue
    assert admin.sweep(received_older_than=0) == [dead_worker] and sent == [[dead_worker]]
    sent.clear()
    monkeypatch.setattr(admin, "waiting", lambda _job: None)  # the broker cannot say: every due event
    assert admin.sweep(received_older_than=0) == sorted([*received, dead_worker])
    assert [len(ids) for ids in sent] == [100, 100, 51]


def test_the_length_of_a_jobs_queue_is_read_from_the_broker(make_app):
    app = make_app(redis_namespace=f"q{uuid.uuid4().hex[:10]}")  # a queue no worker takes from
    with app.app_context():
        celery = app.extensions["celery"]
        queue = celery.amqp.router.route({}, Job.WEBHOOKS_PROCESS_BATCH)["queue"]
        assert jobs.waiting(Job.WEBHOOKS_PROCESS_BATCH) == 0
        with celery.connection_for_write() as connection:
            queue.bind(connection.default_channel).declare()  # as a worker does: messages land in it
        for n in range(3):
            celery.send_task(Job.WEBHOOKS_PROCESS_BATCH, args=[[n]])
        assert jobs.waiting(Job.WEBHOOKS_PROCESS_BATCH) == 3
        assert jobs.waiting(Job.MESSAGING_TICK) == 0  # another queue
        with celery.connection_for_write() as connection:
            connection.default_channel.queue_purge(queue.name)
        assert jobs.waiting(Job.WEBHOOKS_PROCESS_BATCH) == 0
        redis = app.extensions["redis"]
        for key in redis.scan_iter(app.config["SETTINGS"].redis_namespace + ":*"):
            redis.delete(key)
