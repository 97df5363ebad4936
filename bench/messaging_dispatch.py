"""bench.messaging's dispatch: a real worker and beat against pacing, with the simulator's outbox checked."""

from __future__ import annotations

import argparse
import itertools
import os
import statistics
import subprocess
import sys
import time
import uuid
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

from sqlalchemy import func, select

from bench.harness import ROOT, stop, tree_cpu_seconds
from bench.messaging_salons import book, link_salons

# --- 3. dispatch ------------------------------------------------------------------------------------


def _simulator_sessions_working(app: Any, company_ids: list[int]) -> None:
    """Each salon's simulated WhatsApp session linked (QR scanned), as the gateway keeps it in Redis."""
    from integrations.whatsapp import SimulatorGateway, SimulatorTimings
    from services.whatsapp.gateway import session_name

    settings = app.config["SETTINGS"]
    # Timers and events of the linking itself are not wanted: the database rows already say WORKING.
    quiet = SimulatorGateway(app.extensions["redis"], settings.key("simulator"), SimulatorTimings(60, 20, 6),
                             lambda *_: None, lambda _: None)
    for company_id in company_ids:
        session = session_name(company_id)
        quiet.start(session)
        quiet.scan(session, f"7999{company_id:07d}")
        quiet.start(session)


def _queue_booking_messages(company_ids: list[int], per_number: int, first_record: int) -> int:
    """``per_number`` new bookings per salon, each announced through the booking-change path (due now)."""
    from models import Booking, MessagingSettings, db
    from services.messaging import booking_changes
    from services.messaging.settings import settings_row
    from services.webhooks.changes import BookingChange, BookingFacts

    for company_id in company_ids:
        # Quiet hours off, so the run does not depend on the hour it starts at in the salons' zones.
        row = settings_row(company_id)
        row.quiet_start = row.quiet_end = None
        db.session.add(row)
    db.session.commit()
    book(company_ids, per_number * len(company_ids), first_record, seed=2)
    planned = 0
    bookings = db.session.scalars(select(Booking).where(Booking.company_id.in_(company_ids))).all()
    for n, booking in enumerate(bookings):
        change = BookingChange(booking.company_id, n + 1, booking.id, booking.record_id, None, BookingFacts.of(booking))
        planned += len(booking_changes.plan_booking_change(change))
        db.session.commit()
    assert db.session.scalar(select(MessagingSettings.company_id).limit(1)) is not None
    return planned


def _sent(company_ids: list[int]) -> int:
    from models import Message, MessageState, db

    found = db.session.scalar(select(func.count()).select_from(Message).where(
        Message.company_id.in_(company_ids), Message.sent_at.is_not(None),
        Message.state.in_(MessageState.OUT)))
    db.session.rollback()
    return int(found or 0)


def _sent_more_often_than_planned(company_ids: list[int], texts: list[dict[str, Any]]) -> int:
    """Texts in the outbox beyond the messages that carry them: a (chat, text) sent more times than the
    messages of that chat and text (the gateway's message id is new on every send, so it cannot tell)."""
    from models import Message, db
    from services.phones import whatsapp_digits

    rows = db.session.execute(select(Message.phone, Message.text).where(Message.company_id.in_(company_ids)))
    planned = Counter((f"{whatsapp_digits(phone)}@c.us", text) for phone, text in rows)
    db.session.rollback()
    sent = Counter((entry["chatId"], entry["text"]) for entry in texts)
    return sum(max(0, count - planned[key]) for key, count in sent.items())


def _celery(env: dict[str, str], role: list[str], log: Path) -> subprocess.Popen[Any]:
    command = [sys.executable, "-m", "celery", "-A", "wsgi:celery_app", *role]
    with open(log, "wb") as out:
        return subprocess.Popen(command, env=env, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT,
                                start_new_session=True)


def _wait(condition: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise RuntimeError(f"{what} within {timeout:.0f}s")
        time.sleep(0.5)


def measure_dispatch(app: Any, env: dict[str, str], args: argparse.Namespace, tmp: Path) -> dict[str, Any]:
    """Dispatch by a real worker and beat: sends per minute per number, CPU, and the outbox checked."""
    from services.messaging import pacing
    from services.whatsapp.gateway import gateway, session_name

    company_ids = link_salons(args.numbers, first_salon_id=5_000_000)
    _simulator_sessions_working(app, company_ids)
    planned = _queue_booking_messages(company_ids, args.per_number, first_record=50_000_000)
    worker = _celery(env, ["worker", "--loglevel", args.log_level, "--pool", "prefork", "--concurrency",
                           str(args.worker_concurrency), "--without-mingle", "--without-gossip",
                           "--hostname", f"bench-{uuid.uuid4().hex[:6]}@%h"], tmp / "worker.log")
    beat = _celery(env, ["beat", "--loglevel", "WARNING", "--schedule", str(tmp / "beat-schedule")],
                   tmp / "beat.log")
    try:
        first_wave = max(1, int(args.numbers * 0.9))
        _wait(lambda: _sent(company_ids) >= first_wave, args.warmup + 120,
              f"{first_wave} numbers did not send their first message")
        time.sleep(args.warmup)
        cpu = {"worker": tree_cpu_seconds(worker.pid), "beat": tree_cpu_seconds(beat.pid)}
        sent, started = _sent(company_ids), time.monotonic()
        time.sleep(args.window)
        elapsed = time.monotonic() - started
        load = os.getloadavg()[0]  # the machine is shared: how busy it was, beside what the worker used
        sent = _sent(company_ids) - sent
        cpu = {name: tree_cpu_seconds(proc.pid) - cpu[name] for name, proc in (("worker", worker), ("beat", beat))}
    finally:
        stop(beat)
        stop(worker)
    with app.app_context():
        gap = pacing.min_gap()
        outbox = {company_id: gateway().sent(session_name(company_id)) for company_id in company_ids}  # type: ignore[attr-defined]
    texts = [entry for entries in outbox.values() for entry in entries if entry["type"] == "text"]
    with app.app_context():
        repeated = _sent_more_often_than_planned(company_ids, texts)
    closest = min((b["at"] - a["at"] for entries in outbox.values()
                   for a, b in itertools.pairwise(_texts(entries))), default=float("nan"))
    per_minute = sent / args.numbers / (elapsed / 60)
    jitter_mean = statistics.fmean(pacing.JITTER)
    allowed = 60 / (gap * jitter_mean)  # the pacer's mean rate: the minimum gap stretched by the mean jitter
    cpu_per_message = cpu["worker"] / sent if sent else float("nan")
    return {"numbers": args.numbers, "planned": planned, "window_s": elapsed, "sent": sent,
            "per_number_per_minute": per_minute, "pacing_cap_per_minute": 60 / gap,
            "pacing_mean_per_minute": allowed, "share_of_pacing": per_minute / allowed,
            "worker_cpu_s": cpu["worker"], "beat_cpu_s": cpu["beat"],
            "worker_cores": cpu["worker"] / elapsed, "beat_cores": cpu["beat"] / elapsed,
            "cpu_s_per_message": cpu_per_message, "texts_in_outbox": len(texts), "sent_twice": repeated,
            "closest_gap_s": closest, "min_gap_s": gap, "cores": os.cpu_count(), "load_average": load,
            "concurrency": args.worker_concurrency}


def _texts(entries: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [entry for entry in entries if entry["type"] == "text"]
