"""PostgreSQL goes away while webhooks keep arriving: every delivery is answered 200 and kept.

The service runs as it does in production (gunicorn, a Celery worker) on a PostgreSQL cluster of the
test's own, which the test stops for ``FAULT_OUTAGE_SECONDS`` (30 by default) and starts again.
Deliveries acknowledged meanwhile wait in the web process's spool and reach the inbox, in the order
they arrived and each once, when the database is back; a web process killed with a full spool leaves
them to the next one, which drains them without waiting for a request.
"""

from __future__ import annotations

import http.client
import json
import os
import threading
import time
import urllib.parse
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from flask import Flask
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import func, select

from models import Booking, EventStatus, IntegrationStatus, WebhookEvent, db
from services.platform.schema import upgrade
from services.webhooks import admin
from tests.factories import MadeCompany, make_company, reread_company
from tests.factories import booking_delivery as delivery
from tests.fakes.yclients import APPLICATION_ID, PARTNER_TOKEN
from tests.servers import OwnPostgres, postgres_bin
from tests.support import Backends, ServiceProcess, post, wait_until, web_command
from tests.whatsapp_stack import Stack, start_stack

pytestmark = pytest.mark.skipif(postgres_bin() is None, reason="PostgreSQL's server programs are not installed")

OUTAGE_SECONDS = float(os.environ.get("FAULT_OUTAGE_SECONDS", "30"))


@pytest.fixture(scope="module")
def own_postgres() -> Iterator[OwnPostgres]:
    server = OwnPostgres().start()
    yield server
    server.destroy()


@pytest.fixture
def stack(make_app: Callable[..., Flask], backends: Backends, service_env: dict[str, str], run_dir: Path,
          own_postgres: OwnPostgres) -> Iterator[Stack]:
    """gunicorn and a worker on a fresh database of the own cluster, with a spool folder of their own."""
    url = own_postgres.create_database(f"fault_{uuid.uuid4().hex[:8]}")
    upgrade(url)
    stack = start_stack(make_app, backends, service_env, run_dir, web=True, DATABASE_URL=url,
                        WEBHOOK_SPOOL_DIR=str(run_dir / f"spool-{uuid.uuid4().hex[:6]}"),
                        WEBHOOK_RETRY_BASE_SECONDS="0.5", WEBHOOK_RETRY_MAX_SECONDS="2",
                        # An event claimed when the database went away is claimed again this soon.
                        WEBHOOK_PROCESSING_TIMEOUT_SECONDS="5")
    try:
        yield stack
    finally:
        with stack.app.app_context():
            db.session.remove()
        stack.stop()
        stack.app.extensions["db"].engine.dispose()
        own_postgres.start()  # for the next test, whatever this one left


class Sender(threading.Thread):
    """Posts deliveries one after another (record ids 1, 2, 3, …; every fifth sent twice) until stopped."""

    def __init__(self, base: str, made: MadeCompany) -> None:
        super().__init__(name="webhook-sender", daemon=True)
        self.base, self.path = base, f"/marketplace/webhook/{made.id}?secret={made.webhook_secret}"
        self.answers: list[tuple[int, tuple[int, Any]]] = []
        self.stopping = threading.Event()

    def run(self) -> None:
        record_id = 0
        while not self.stopping.is_set():
            record_id += 1
            for _ in range(2 if record_id % 5 == 0 else 1):
                try:
                    answer = post(self.base, self.path, delivery(record_id))
                except OSError as exc:
                    answer = (0, repr(exc))
                self.answers.append((record_id, answer))
            time.sleep(0.02)

    def finish(self) -> list[int]:
        self.stopping.set()
        self.join(30)
        return sorted({record_id for record_id, _ in self.answers})


def inbox(company_id: int) -> list[WebhookEvent]:
    db.session.rollback()
    query = select(WebhookEvent).where(WebhookEvent.company_id == company_id).order_by(WebhookEvent.id)
    return list(db.session.scalars(query.execution_options(populate_existing=True)))


def wait_processed(company_id: int, expected: int, timeout: float = 90) -> None:
    """Wait until the company's inbox holds ``expected`` events, all processed (sweeping as beat does)."""
    seen: dict[str, int] = {}

    def done() -> bool:
        events = inbox(company_id)
        seen.clear()
        for event in events:
            seen[event.status] = seen.get(event.status, 0) + 1
        if len(events) == expected and seen.get(EventStatus.PROCESSED) == expected:
            return True
        admin.sweep(received_older_than=0)
        return False

    try:
        wait_until(done, timeout=timeout, interval=0.5)
    except AssertionError:
        raise AssertionError(f"expected {expected} processed events, the inbox holds {seen}") from None


def record_ids(events: list[WebhookEvent]) -> list[int]:
    return [int(e.payload["data"]["id"]) for e in events]


def metric(base: str, name: str, admin_key: str, **labels: str) -> float:
    """The sum of a metric's series with ``labels``, as /marketplace/metrics shows it."""
    url = urllib.parse.urlsplit(base)
    conn = http.client.HTTPConnection(url.hostname, url.port, timeout=20)
    conn.request("GET", "/marketplace/metrics", headers={"X-API-Key": admin_key})
    text = conn.getresponse().read().decode()
    conn.close()
    return sum(sample.value for family in text_string_to_metric_families(text) for sample in family.samples
               if sample.name == name and labels.items() <= sample.labels.items())


def test_postgres_down_for_a_while_every_delivery_is_acknowledged_kept_in_order_and_once(
        stack: Stack, own_postgres: OwnPostgres, admin_headers: dict[str, str]):
    assert stack.base_url is not None
    with stack.app.app_context():
        made = make_company()
        db.session.remove()
    sender = Sender(stack.base_url, made)
    sender.start()
    wait_until(lambda: len(sender.answers) >= 10, timeout=20)
    own_postgres.stop()
    stopped_at = time.time()
    wait_until(lambda: time.time() - stopped_at >= OUTAGE_SECONDS, timeout=OUTAGE_SECONDS + 5, interval=0.5)
    during = len(sender.answers)
    own_postgres.start()
    wait_until(lambda: len(sender.answers) >= during + 20, timeout=30)
    sent = sender.finish()

    assert [answer for _, answer in sender.answers if answer != (200, {"success": True})] == []
    with stack.app.app_context():
        wait_processed(made.id, len(sent))
        events = inbox(made.id)
        # Each delivery once, in the order it was sent; the spooled ones keep their time of arrival.
        assert record_ids(events) == sent
        outage = [e for e in events if stopped_at <= e.received_at.timestamp() <= stopped_at + OUTAGE_SECONDS]
        assert len(outage) >= OUTAGE_SECONDS * 5
        # An event the database went away under is run again; its effect is still one booking.
        db.session.rollback()
        assert db.session.scalar(select(func.count()).select_from(Booking)
                                 .where(Booking.company_id == made.id)) == len(sent)
        db.session.remove()
    key = admin_headers["X-API-Key"]
    assert metric(stack.base_url, "ycwa_webhooks_received_total", key, outcome="spooled") >= len(outage)
    assert metric(stack.base_url, "ycwa_webhook_spool_drained_total", key, outcome="accepted") >= len(outage)
    assert metric(stack.base_url, "ycwa_webhook_spool_deliveries", key) == 0


def test_a_web_process_killed_with_a_full_spool_is_drained_by_the_next_one(
        stack: Stack, own_postgres: OwnPostgres, backends: Backends, run_dir: Path):
    assert stack.base_url is not None
    with stack.app.app_context():
        made = make_company()
        db.session.remove()
    path = f"/marketplace/webhook/{made.id}?secret={made.webhook_secret}"
    freeze = json.dumps({"salon_id": made.salon_id, "application_id": APPLICATION_ID, "event": "freeze",
                         "partner_token": PARTNER_TOKEN}).encode()
    own_postgres.stop()
    answers = [post(stack.base_url, path, delivery(n)) for n in range(1, 41)]
    assert answers == [(200, {"success": True})] * 40
    # A lifecycle delivery is not spooled (its salon is looked up to file it): 503, so YClients sends it again.
    refused = requests.post(stack.base_url + "/marketplace/webhook/yclients", data=freeze, timeout=20)
    assert (refused.status_code, refused.json()["success"]) == (503, False) and refused.headers["Retry-After"]
    [web] = [proc for proc in stack.processes if proc.name.startswith("web-")]
    web.kill()  # a crash: nothing of the spool is drained on the way out
    own_postgres.start()

    port = int(stack.base_url.rsplit(":", 1)[1])
    again = ServiceProcess("web-restarted", web_command(port), backends.env(**stack.env),
                           run_dir / f"web-restarted-{port}.log").start()
    stack.processes.append(again)
    with stack.app.app_context():  # no request reaches the new process: it drains on its own
        wait_processed(made.id, 40)
        assert record_ids(inbox(made.id)) == list(range(1, 41))
        assert post(stack.base_url, "/marketplace/webhook/yclients", freeze) == (200, {"success": True})
        wait_until(lambda: reread_company(made.id).integration_status == IntegrationStatus.FROZEN, timeout=30)
        db.session.remove()
