"""The soak (`make soak`, SOAK_SECONDS=300): mixed traffic for minutes while the worker is SIGKILLed at
random points, then every event is found processed exactly once.

Traffic: webhook deliveries from several senders (new records, record updates, repeated deliveries),
and salons going through the whole connect flow (QR, scan, the activation callback to YClients). A
killer thread SIGKILLs the worker's whole process group every few seconds and starts it again; beat
keeps sweeping. Afterwards, with the worker left alone: every accepted delivery is one inbox row and
processed, every record is one booking whose last event is its newest delivery, every salon is active
with one sent callback. The summary line is what docs/BENCHMARKS.md records.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from flask import Flask
from sqlalchemy import func, select

from models import Booking, Callback, Company, EventStatus, IntegrationStatus, WebhookEvent, db
from tests.factories import make_company
from tests.soak_traffic import Traffic, connect_salons, kill_worker_now_and_then, send_webhooks
from tests.support import Backends, wait_until
from tests.whatsapp_stack import Stack, start_stack

SOAK_SECONDS = float(os.environ.get("SOAK_SECONDS", "0"))
pytestmark = pytest.mark.skipif(not SOAK_SECONDS, reason="the soak runs with `make soak` (SOAK_SECONDS)")


@pytest.fixture
def stack(make_app: Callable[..., Flask], backends: Backends, service_env: dict[str, str],
          run_dir: Path) -> Iterator[Stack]:
    stack = start_stack(make_app, backends, service_env, run_dir, web=True, web_workers=2, beat=True,
                        WEBHOOK_PROCESSING_TIMEOUT_SECONDS="10", WEBHOOK_SWEEP_AFTER_SECONDS="2",
                        WEBHOOK_RETRY_BASE_SECONDS="1", WEBHOOK_RETRY_MAX_SECONDS="5", WEBHOOK_MAX_ATTEMPTS="50",
                        CALLBACK_MAX_ATTEMPTS="50", CELERY_VISIBILITY_TIMEOUT="15")
    try:
        yield stack
    finally:
        stack.stop()


@pytest.mark.timeout(SOAK_SECONDS + 900)  # the traffic, then up to 5 minutes to settle
def test_soak_with_worker_kills(stack: Stack, backends: Backends):
    base = stack.base_url
    assert base is not None
    app = stack.app
    with app.app_context():
        companies = [make_company() for _ in range(5)]
        db.session.remove()
    traffic = Traffic()
    until = time.monotonic() + SOAK_SECONDS
    worker = next(proc for proc in stack.processes if proc.name.startswith("worker-"))
    threads = [threading.Thread(target=send_webhooks, args=(base, companies, traffic, until, n)) for n in range(4)]
    threads.append(threading.Thread(target=connect_salons, args=(app, base, traffic, until)))
    threads.append(threading.Thread(target=kill_worker_now_and_then, args=(worker, traffic, until, 7)))
    started = time.monotonic()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert traffic.bad_answers == []

    ours = [made.id for made in companies]
    salons = [made.id for made in traffic.salons]

    def settled() -> bool:
        db.session.rollback()
        waiting = db.session.scalar(select(func.count()).select_from(WebhookEvent).where(
            WebhookEvent.company_id.in_(ours), WebhookEvent.status != EventStatus.PROCESSED))
        active = db.session.scalar(select(func.count()).select_from(Company).where(
            Company.id.in_(salons), Company.integration_status == IntegrationStatus.ACTIVE))
        return waiting == 0 and active == len(salons)

    with app.app_context():
        wait_until(settled, timeout=300, interval=2)
        settled_after = time.monotonic() - started - SOAK_SECONDS
        events = list(db.session.scalars(select(WebhookEvent).where(WebhookEvent.company_id.in_(ours))))
        bookings = list(db.session.scalars(select(Booking).where(Booking.company_id.in_(ours))))
        # Each distinct delivery once in the inbox, each record once in the mirror, at its newest version.
        distinct = {(made, record, version) for (made, record), newest in traffic.newest.items()
                    for version in range(newest + 1)}
        assert len(events) <= len(distinct) and {e.status for e in events} == {EventStatus.PROCESSED}
        assert len(bookings) == len(traffic.newest)
        by_record = {(b.company_id, b.record_id): b for b in bookings}
        for key, newest in traffic.newest.items():
            assert by_record[key].data.get("comment") == f"v{newest}", key
        sent = db.session.scalar(select(func.count()).select_from(Callback).where(
            Callback.company_id.in_(salons), Callback.status == "sent"))
        assert sent == len(salons)
        posted = {made.salon_id: len(stack.yclients.callbacks_for(made.salon_id))
                  for made in traffic.salons}
        db.session.remove()
    attempts = sum(e.attempts for e in events)
    print(f"\nSOAK {SOAK_SECONDS:.0f}s: {traffic.deliveries} deliveries, {len(events)} inbox events, "
          f"{len(bookings)} bookings, {len(salons)} salons connected, {traffic.kills} worker SIGKILLs, "
          f"{attempts - len(events)} re-run attempts, callbacks POSTed per salon {sorted(set(posted.values()))}, "
          f"settled {settled_after:.0f}s after the traffic stopped")
