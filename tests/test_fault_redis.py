"""Redis goes away (broker, pub/sub, rate limits) while the service is in use, then comes back.

gunicorn, a Celery worker and beat run on a Redis server of the test's own, stopped for
``FAULT_OUTAGE_SECONDS`` (30 by default) and started again, empty, on the same port. Meanwhile every
webhook is answered 200 and stored, the pages and the polling fallback answer, rate limits let
requests through (with a warning in the log) instead of refusing them; once Redis is back beat's sweep
gets every stored event processed and a socket opened before the outage gets events again.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import redis
import requests
from flask import Flask
from sqlalchemy import select

from models import EventStatus, WebhookEvent, db
from tests.factories import booking_delivery as delivery
from tests.factories import make_company
from tests.servers import OwnRedis
from tests.support import Backends, post, wait_until
from tests.whatsapp_stack import Stack, start_stack
from tests.ws_client import WsClient

OUTAGE_SECONDS = float(os.environ.get("FAULT_OUTAGE_SECONDS", "30"))


@pytest.fixture
def redis_server() -> Iterator[OwnRedis]:
    server = OwnRedis().start()
    yield server
    server.destroy()


@pytest.fixture
def stack(make_app: Callable[..., Flask], backends: Backends, service_env: dict[str, str], run_dir: Path,
          redis_server: OwnRedis) -> Iterator[Stack]:
    """gunicorn, a worker and beat on the own Redis, with rate limits on."""
    stack = start_stack(make_app, backends, service_env, run_dir, web=True, beat=True, REDIS_URL=redis_server.url,
                        RATELIMIT_ENABLED="true", WEBHOOK_SWEEP_AFTER_SECONDS="1")
    stack.redis_url = redis_server.url
    try:
        yield stack
    finally:
        if not redis_server.running:
            redis_server.start()
        stack.stop()


def inbox(company_id: int) -> list[WebhookEvent]:
    db.session.rollback()
    query = select(WebhookEvent).where(WebhookEvent.company_id == company_id).order_by(WebhookEvent.id)
    return list(db.session.scalars(query.execution_options(populate_existing=True)))


def test_redis_down_for_a_while_nothing_is_refused_and_everything_is_processed_after(stack: Stack,
                                                                                     redis_server: OwnRedis):
    base = stack.base_url
    assert base is not None
    with stack.app.app_context():
        made = make_company()
        db.session.remove()
    socket = WsClient(base.replace("http://", "ws://") + "/marketplace/ws")
    try:
        socket.send("authenticate", {"token": made.token, "companyId": made.id})
        socket.wait_for("authenticated")
        hook = f"/marketplace/webhook/{made.id}?secret={made.webhook_secret}"
        page = f"{base}/marketplace/connect?token={made.token}&company={made.id}&salon={made.salon_id}"
        polling = f"{base}/marketplace/status/{made.id}?token={made.token}"

        redis_server.stop()
        stopped_at, sent, pages = time.monotonic(), 0, []
        while time.monotonic() - stopped_at < OUTAGE_SECONDS or sent <= 60:
            sent += 1
            assert post(base, hook, delivery(sent)) == (200, {"success": True})
            # More than the public limit (60 a minute) of page loads: refused by nobody while Redis is away.
            pages.append(requests.get(page, timeout=20).status_code)
            pages.append(requests.get(polling, timeout=20).status_code)
            time.sleep(0.1)
        assert set(pages) == {200}
        with stack.app.app_context():
            stored = inbox(made.id)
            assert len(stored) == sent and {e.status for e in stored} == {EventStatus.RECEIVED}
            db.session.remove()
        web = next(proc for proc in stack.processes if proc.name.startswith("web-"))
        # Said in one line a minute, not in a traceback per request.
        output = web.output()
        briefs = output.count("rate limit storage unreachable, requests let through unlimited")
        assert 1 <= briefs <= OUTAGE_SECONDS // 60 + 2 and "Swallowing error" not in output

        redis_server.start()  # empty, as a replaced server comes back
        with stack.app.app_context():  # beat's sweep (every 5 s) hands every stored event to the worker
            wait_until(lambda: [e.status for e in inbox(made.id)] == [EventStatus.PROCESSED] * sent, timeout=120,
                       interval=1)
            db.session.remove()
        # The socket opened before the outage gets events again: the bus subscriber reconnected.
        def probed() -> list[dict[str, int]]:
            try:
                stack.app.extensions["bus"].emit(made.id, "probe", {"n": 1})
            except redis.RedisError:  # the test's own client reconnects on its next call
                pass
            return socket.named("probe")

        assert wait_until(probed, timeout=60, interval=1)[0] == {"n": 1}
        # And the limits count again: the 61st page load of the minute is refused.
        answers = [requests.get(page, timeout=20).status_code for _ in range(61)]
        assert answers == [200] * 60 + [429]
    finally:
        socket.close()
