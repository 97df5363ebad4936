"""The soak (`make soak`, SOAK_SECONDS=300): mixed traffic for minutes while the worker is SIGKILLed at
random points, then every event is found processed exactly once and no message sent twice.

Traffic (tests/soak_traffic.py): webhook deliveries from several senders (new records, record
updates, repeated deliveries) to salons that are not connected; salons going through the whole
connect flow (QR, scan, the activation callback to YClients) with messaging rules that make their
reminders fall due within minutes; bookings for the connected salons' clients (one in five delivered again),
which the planner turns into booking messages and reminders that the worker sends through the
simulator; and each client answering «1» to its confirmation request. A killer thread SIGKILLs the
worker's whole process group every few seconds and starts it again; beat keeps sweeping and ticking.

Afterwards, with the worker left alone, once nothing is left that is due: every accepted delivery is
one inbox row and processed, every record one booking at its newest delivery, every salon active with
one sent callback (POSTed to YClients again only with the same key, after a kill mid-call); every client
booking planned once, no text in the simulator's outbox twice or unaccounted for, every due message sent
or failed as interrupted (never sent again); every reply one stored confirmation written to YClients as
attendance 2. A failure says what was left undone.
"""

from __future__ import annotations

import os
import re
import time
from collections import Counter
from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path

import pytest
from flask import Flask
from sqlalchemy import func, select

from models import (
    Booking,
    Callback,
    Company,
    EventStatus,
    InboundMessage,
    IntegrationStatus,
    Message,
    MessageState,
    ReplyWrite,
    WebhookEvent,
    db,
    utcnow,
)
from services.phones import whatsapp_digits
from services.whatsapp import gateway
from tests.factories import make_company, reread_company
from tests.messaging.test_delivery import FAST
from tests.soak_traffic import (
    Traffic,
    book_clients,
    connect_salon,
    connect_salons,
    kill_worker_now_and_then,
    progress,
    reply_to_requests,
    send_webhooks,
)
from tests.support import Backends, ServiceProcess, wait_until
from tests.whatsapp_stack import Stack, start_stack

SOAK_SECONDS = float(os.environ.get("SOAK_SECONDS", "0"))
SETTLE_SECONDS = 300
pytestmark = pytest.mark.skipif(not SOAK_SECONDS, reason="the soak runs with `make soak` (SOAK_SECONDS)")
VISIT_PATH = re.compile(r"^/api/v1/visits/(\d+)/(\d+)/?$")
# What a worker killed after handing a text to the gateway leaves: failed, never sent a second time.
INTERRUPTED = "outcome unknown"


@pytest.fixture
def stack(make_app: Callable[..., Flask], backends: Backends, service_env: dict[str, str],
          run_dir: Path) -> Iterator[Stack]:
    # A send interrupted by a kill is settled after 30 s (failed if it was handed to the gateway, queued
    # again if not) instead of the production lease of ten minutes.
    stack = start_stack(make_app, backends, service_env, run_dir, web=True, web_workers=2, beat=True,
                        WEBHOOK_PROCESSING_TIMEOUT_SECONDS="10", WEBHOOK_SWEEP_AFTER_SECONDS="2",
                        WEBHOOK_RETRY_BASE_SECONDS="1", WEBHOOK_RETRY_MAX_SECONDS="5", WEBHOOK_MAX_ATTEMPTS="50",
                        CALLBACK_MAX_ATTEMPTS="50", CELERY_VISIBILITY_TIMEOUT="15",
                        MESSAGING_SENDING_LEASE_SECONDS="30", **FAST)
    try:
        yield stack
    finally:
        stack.stop()


def unsettled(company_ids: list[int], traffic: Traffic, worker: ServiceProcess, now: datetime) -> list[str]:
    """What is still to be done: events not processed, salons not active, due messages not sent, replies
    not stored or not written. Empty once the service has caught up."""
    db.session.rollback()
    salons = [made.id for made in traffic.salons]
    left: list[str] = []
    events = db.session.execute(
        select(WebhookEvent.status, func.count()).where(WebhookEvent.company_id.in_(company_ids + salons),
                                                        WebhookEvent.status != EventStatus.PROCESSED)
        .group_by(WebhookEvent.status)).all()
    if events:
        left.append(f"inbox events not processed: {dict(events)}")
    inactive = db.session.execute(select(Company.id, Company.integration_status).where(
        Company.id.in_(salons), Company.integration_status != IntegrationStatus.ACTIVE)).all()
    if inactive:
        left.append(f"salons not active: {dict(inactive)}")
    due = db.session.execute(
        select(Message.kind, Message.state, func.count()).where(
            Message.company_id.in_(salons), Message.due_at <= now,
            Message.state.in_((*MessageState.WAITING, MessageState.SENDING)))
        .group_by(Message.kind, Message.state)).all()
    if due:
        left.append(f"due messages not sent (kind, state, count): {[tuple(row) for row in due]}")
    asked = db.session.scalar(select(func.count()).select_from(Message).where(
        Message.company_id.in_(salons), Message.kind == "confirmation_request", Message.state.in_(MessageState.OUT)))
    if asked != len(traffic.replied):
        left.append(f"confirmation requests out: {asked}, answered by their clients: {len(traffic.replied)}")
    writes = Counter(db.session.scalars(select(InboundMessage.yclients_write).where(
        InboundMessage.company_id.in_(salons))))
    if sum(writes.values()) < len(traffic.replied) or writes[ReplyWrite.PENDING]:
        left.append(f"replies: {len(traffic.replied)} sent, stored with their YClients write {dict(writes)}")
    if not worker.running:
        left.append(f"the worker is not running; its log ends:\n{worker.output()[-3000:]}")
    return left


def settle(company_ids: list[int], traffic: Traffic, worker: ServiceProcess) -> tuple[float, datetime]:
    """Wait until nothing is left undone (a line every 30 s says what is); fail with it after SETTLE_SECONDS.
    How long it took, and the moment it was found settled (what fell due later may still wait)."""
    started = last_line = time.monotonic()
    while True:
        moment = utcnow()
        left = unsettled(company_ids, traffic, worker, moment)
        if not left:
            return time.monotonic() - started, moment
        waited = time.monotonic() - started
        if waited > SETTLE_SECONDS:
            raise AssertionError(f"not settled {SETTLE_SECONDS} s after the traffic stopped:\n" + "\n".join(left))
        if time.monotonic() - last_line >= 30:
            print(f"settling {waited:.0f}s: " + "; ".join(left), flush=True)
            last_line = time.monotonic()
        time.sleep(2)


def service_side(app: Flask, traffic: Traffic) -> Callable[[], str]:
    """For the progress lines: the service's messages so far, by state."""

    def report() -> str:
        with app.app_context():
            salons = [made.id for made in list(traffic.salons)]
            states = db.session.execute(select(Message.state, func.count()).where(Message.company_id.in_(salons))
                                        .group_by(Message.state)).all()
            db.session.remove()
        return f"messages {dict(states)}"

    return report


def check_webhooks_and_connects(stack: Stack, company_ids: list[int], traffic: Traffic) -> dict[str, int]:
    """Each distinct delivery once in the inbox, each record once in the mirror at its newest version;
    each salon one sent callback (POSTed again only with the same key)."""
    events = list(db.session.scalars(select(WebhookEvent).where(WebhookEvent.company_id.in_(company_ids))))
    bookings = list(db.session.scalars(select(Booking).where(Booking.company_id.in_(company_ids))))
    distinct = {(made, record, version) for (made, record), newest in traffic.newest.items()
                for version in range(newest + 1)}
    assert len(events) <= len(distinct) and {e.status for e in events} == {EventStatus.PROCESSED}
    assert len(bookings) == len(traffic.newest)
    by_record = {(b.company_id, b.record_id): b for b in bookings}
    for key, newest in traffic.newest.items():
        assert by_record[key].data.get("comment") == f"v{newest}", key
    salons = [made.id for made in traffic.salons]
    sent = db.session.scalar(select(func.count()).select_from(Callback).where(
        Callback.company_id.in_(salons), Callback.status == "sent"))
    assert sent == len(salons)
    # A worker killed after its POST reached YClients, before it recorded the answer, sends it again: with
    # the same key (one per callback row), which YClients takes as the same installation.
    posted = {made.salon_id: [call.body["api_key"] for call in stack.yclients.callbacks_for(made.salon_id)]
              for made in traffic.salons}
    assert all(keys and set(keys) == {keys[0]} for keys in posted.values()), posted
    return {"events": len(events), "bookings": len(bookings), "reruns": sum(e.attempts for e in events) - len(events),
            "callbacks_again": sum(len(keys) - 1 for keys in posted.values())}


def _chat_text(message: Message) -> tuple[str, str | None]:
    """How the simulator's outbox names a message's text: the chat and the text."""
    return f"{whatsapp_digits(message.phone)}@c.us", message.text


def check_messages(traffic: Traffic, settled_at: datetime) -> dict[str, int]:
    """Every client booking planned once; no text sent twice or without its message; every due message
    out or failed as interrupted; the rest legitimately waiting (due later)."""
    assert traffic.bookings, "no client bookings: the soak sent no messages"
    salons = [made.id for made in traffic.salons]
    messages = list(db.session.scalars(select(Message).where(Message.company_id.in_(salons))))
    booked = {b.id: (b.company_id, b.record_id) for b in db.session.scalars(
        select(Booking).where(Booking.company_id.in_(salons)))}
    assert sorted(booked.values()) == sorted((b.company_id, b.record_id) for b in traffic.bookings)
    kinds: dict[tuple[int, int], Counter[str]] = {key: Counter() for key in booked.values()}
    for message in messages:
        if message.booking_id is not None:
            kinds[booked[message.booking_id]][message.kind] += 1
    replied = {(b.company_id, b.record_id) for b in traffic.replied.values()}
    for key, found in kinds.items():
        expected = {"booking_created": 1, "confirmation_request": 1, "reminder": 1}
        assert found == (expected | {"reply_confirmed": 1} if key in replied else expected), (key, found)

    outbox = Counter((entry["chatId"], entry["text"]) for company_id in salons
                     for entry in gateway.gateway().sent(gateway.session_name(company_id))  # type: ignore[attr-defined]
                     if entry["type"] == "text")
    assert [text for text, count in outbox.items() if count > 1] == [], "sent twice"
    recorded = {_chat_text(m) for m in messages if m.text}
    assert [text for text in outbox if text not in recorded] == [], "sent without a message of its own"
    out = [m for m in messages if m.state in MessageState.OUT]
    assert [m.idempotency_key for m in out if _chat_text(m) not in outbox] == [], "sent, but not in the outbox"
    waiting = [m for m in messages if m.state in MessageState.WAITING]
    assert [m.idempotency_key for m in waiting if m.due_at <= settled_at] == []
    failed = [m for m in messages if m.state == MessageState.FAILED]
    assert [(m.idempotency_key, m.reason) for m in failed if not (m.reason or "").startswith(INTERRUPTED)] == []
    others = [(m.idempotency_key, m.state, m.reason) for m in messages if m not in out + waiting + failed]
    assert others == [], "skipped or expired, though nothing in this traffic calls for it"
    handed_out = sum(1 for m in failed if _chat_text(m) in outbox)
    return {"messages": len(messages), "texts": sum(outbox.values()), "out": len(out), "waiting": len(waiting),
            "interrupted": len(failed), "interrupted_reached_whatsapp": handed_out}


def check_replies(stack: Stack, traffic: Traffic) -> dict[str, int]:
    """Each «1» stored once as a confirmation of its booking, written to YClients as attendance 2."""
    salons = [made.id for made in traffic.salons]
    rows = list(db.session.scalars(select(InboundMessage).where(InboundMessage.company_id.in_(salons))))
    assert Counter((r.company_id, r.phone) for r in rows) == Counter(traffic.replied.keys())
    assert {(r.meaning, r.yclients_write) for r in rows} <= {("confirm", ReplyWrite.DONE)}
    puts = Counter((int(found.group(1)), int(found.group(2))) for r in list(stack.yclients.requests)
                   if r.method == "PUT" and (found := VISIT_PATH.match(r.path)))
    for booking in traffic.replied.values():
        visit = (booking.visit_id, booking.record_id)
        assert stack.yclients.attendance.get(visit) == 2 and puts[visit] >= 1, (visit, puts[visit])
        row = db.session.scalars(select(Booking).where(Booking.company_id == booking.company_id,
                                                       Booking.record_id == booking.record_id)).one()
        assert row.attendance == 2
    return {"replies": len(rows), "writes": sum(puts.values())}


@pytest.mark.timeout(SOAK_SECONDS + SETTLE_SECONDS + 600)  # the traffic, settling, then the checks
def test_soak_with_worker_kills(stack: Stack, backends: Backends):
    base = stack.base_url
    assert base is not None
    app = stack.app
    with app.app_context():
        companies = [make_company() for _ in range(5)]
        db.session.remove()
    company_ids = [made.id for made in companies]
    traffic = Traffic()
    worker = next(proc for proc in stack.processes if proc.name.startswith("worker-"))
    with app.app_context():  # one salon connected before the clock starts, so client bookings begin at once
        first = connect_salon(app, base, traffic, "+79000000000")
        wait_until(lambda: reread_company(first.id).whatsapp_connected_at, timeout=60)
        db.session.remove()
    started = time.monotonic()
    load = [os.getloadavg()[0]]
    threads = [traffic.run(f"webhooks-{n}", send_webhooks, base, companies, traffic, n) for n in range(4)]
    # The clients go on answering the requests that go out while the service settles.
    replies = traffic.run("replies", reply_to_requests, app, traffic, traffic.replies_end)
    threads += [traffic.run("connects", connect_salons, app, base, traffic),
                traffic.run("bookings", book_clients, app, base, stack.yclients, traffic, 11),
                traffic.run("killer", kill_worker_now_and_then, worker, traffic, 7),
                traffic.run("progress", progress, traffic, started, service_side(app, traffic))]
    traffic.stop.wait(SOAK_SECONDS)
    traffic.stop.set()
    for thread in threads:
        thread.join()
    load.append(os.getloadavg()[0])
    try:
        assert traffic.errors == [], "\n".join(traffic.errors)
        assert traffic.bad_answers == []
        with app.app_context():
            settled_after, settled_at = settle(company_ids, traffic, worker)
            db.session.remove()
    finally:
        traffic.replies_end.set()
        replies.join()
    assert traffic.errors == [], "\n".join(traffic.errors)
    load.append(os.getloadavg()[0])

    with app.app_context():
        inbox = check_webhooks_and_connects(stack, company_ids, traffic)
        sent = check_messages(traffic, settled_at)
        answered = check_replies(stack, traffic)
        db.session.remove()
    print(f"\nSOAK {SOAK_SECONDS:.0f}s: {traffic.deliveries} deliveries, {inbox['events']} inbox events, "
          f"{inbox['bookings']} bookings, {len(traffic.salons)} salons connected (one callback each, "
          f"{inbox['callbacks_again']} POSTed again with its key after a kill mid-call), "
          f"{traffic.kills} worker SIGKILLs, {inbox['reruns']} re-run attempts; {len(traffic.bookings)} client "
          f"bookings ({traffic.redelivered} delivered again), {sent['messages']} messages: {sent['texts']} texts "
          f"in the outbox, none twice, {sent['out']} sent, {sent['interrupted']} interrupted "
          f"({sent['interrupted_reached_whatsapp']} of them had reached WhatsApp), {sent['waiting']} due later; "
          f"{answered['replies']} replies, {answered['writes']} attendance writes; settled {settled_after:.0f}s "
          f"after the traffic stopped; load average {' → '.join(f'{x:.1f}' for x in load)}", flush=True)
