"""Messaging a salon's clients at scale: planning, the beat tick's due query, and dispatch against pacing.

On a fresh PostgreSQL database (migrated to head) and a Redis namespace of its own (both on 127.0.0.1):

1. **Planning.** ``--salons`` linked salons (``active``, WhatsApp connected, sessions ``WORKING``) share
   ``--bookings`` future bookings, each with a client phone. Every salon is planned through the real
   planner (``booking_changes.replan_company``, one transaction per salon as the ``messaging.replan``
   task does): bookings/s and messages/s. Beside it, in the same run, a plain bulk INSERT of the very
   same rows into a copy of the messages table (same indexes and constraints): the ratio is what
   deciding costs over storing.
2. **The due query per beat tick** at that size: the tick's queries (``dispatch.expire_and_recover`` +
   ``dispatch.claim_due``) in one transaction, rolled back so every tick sees the same rows, ``--ticks``
   times with nothing due, with more than a batch due, and with a backlog of ``--backlog`` due;
   p50/p99 against the 50 ms target, and EXPLAIN (ANALYZE, BUFFERS) of every statement the tick ran
   (captured from the engine, so it is the service's own SQL), flagging any scan of all messages.
3. **Dispatch.** A real Celery worker (prefork) and beat with the simulator gateway and the default
   pacing; ``--numbers`` connected numbers, each with booking messages due now (planned through the
   booking-change path). Over ``--window`` seconds: sends per minute per number against what pacing
   allows, the worker's and beat's CPU (their own process trees, from /proc) and CPU-seconds per
   message; then from the simulator's outbox: no message sent twice, no two sends of a number closer
   than the minimum gap.

    .venv/bin/python -m bench.messaging [--salons 1000 --bookings 100000] [--numbers 1000] [--write]

``--write`` replaces the "Messaging" section of docs/BENCHMARKS.md with the results.
"""

from __future__ import annotations

import argparse
import itertools
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, cast
from zoneinfo import ZoneInfo

from sqlalchemy import MetaData, Table, event, func, insert, select, text

from bench.harness import (
    REDIS_URL,
    ROOT,
    create_database,
    drop_database,
    percentile,
    publish,
    stop,
    tree_cpu_seconds,
)

HEADING = "## Messaging"
TARGET_TICK_MS = 50.0
TARGET_NUMBERS, TARGET_PER_MINUTE = 1000, 4
# The pacer stamps a send before its commit and the gateway call; the gateway's clock sees that jitter too.
GAP_TOLERANCE_S = 0.05
ZONES = ("Europe/Moscow", "Asia/Yekaterinburg", "Europe/Kaliningrad", "Asia/Novosibirsk", "Europe/Samara")
SERVICES = (["Стрижка"], ["Маникюр", "Покрытие гель-лак"], ["Окрашивание"], ["Массаж лица"])


def _environment(database_url: str, namespace: str, log_level: str) -> dict[str, str]:
    env = {**os.environ, "APP_ENV": "production", "DATABASE_URL": database_url, "REDIS_URL": REDIS_URL,
           "REDIS_NAMESPACE": namespace, "SECRET_KEY": "bench-secret-key-0123456789-abcdefghijklmnop",
           "PUBLIC_BASE_URL": "http://127.0.0.1:9", "WHATSAPP_GATEWAY": "simulator", "LOG_LEVEL": log_level,
           "DATABASE_POOL_SIZE": "2", "PYTHONUNBUFFERED": "1"}
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    return env


# --- the salons -------------------------------------------------------------------------------------


def _link_salons(count: int, first_salon_id: int) -> list[int]:
    """``count`` salons as activation leaves them: active, WhatsApp connected, the session WORKING."""
    from models import Company, IntegrationStatus, WhatsAppSession, db
    from services.whatsapp.gateway import session_name
    from services.whatsapp.sessions import SessionStatus

    now = datetime.now(UTC)
    rows = [{"salon_id": first_salon_id + n, "title": f"Салон {first_salon_id + n}", "address": "Москва, Тверская, 1",
             "timezone": ZONES[n % len(ZONES)], "integration_status": IntegrationStatus.ACTIVE,
             "whatsapp_phone": f"+7999{first_salon_id + n:07d}", "whatsapp_connected_at": now, "activated_at": now}
            for n in range(count)]
    ids = list(db.session.scalars(insert(Company).returning(Company.id), rows))
    db.session.execute(insert(WhatsAppSession), [
        {"company_id": company_id, "gateway_session": session_name(company_id), "status": SessionStatus.WORKING,
         "me_phone": row["whatsapp_phone"]} for company_id, row in zip(ids, rows, strict=True)])
    db.session.commit()
    return ids


def _book(company_ids: list[int], bookings: int, first_record: int, seed: int) -> None:
    """``bookings`` future bookings spread over the salons (2 to 32 days ahead, 10:00–19:00 local), each with
    its own client: far enough ahead that none of their messages is due now."""
    from models import Booking, Client, Company, db

    rng = random.Random(seed)
    zones: dict[int, str] = {row.id: row.timezone for row in db.session.execute(
        select(Company.id, Company.timezone).where(Company.id.in_(company_ids)))}
    today = datetime.now(UTC).date()
    chunk = 5000
    for start in range(0, bookings, chunk):
        batch = range(start, min(bookings, start + chunk))
        clients = [{"company_id": company_ids[n % len(company_ids)], "client_id": first_record + n,
                    "name": rng.choice(("Анна", "Мария", "Ольга", "Елена")), "phone": f"+7900{first_record + n:07d}"}
                   for n in batch]
        client_ids = list(db.session.scalars(insert(Client).returning(Client.id), clients))
        rows = []
        for n, client_id in zip(batch, client_ids, strict=True):
            company_id = company_ids[n % len(company_ids)]
            zone = ZoneInfo(zones[company_id])
            day = today + timedelta(days=rng.randint(2, 32))
            starts = datetime(day.year, day.month, day.day, rng.randint(10, 19), rng.choice((0, 30)), tzinfo=zone)
            rows.append({"company_id": company_id, "record_id": first_record + n, "status": "active",
                         "starts_at": starts, "ends_at": starts + timedelta(hours=1), "staff_id": n % 7 + 1,
                         "staff_name": "Ольга", "services": rng.choice(SERVICES), "attendance": 0,
                         "client_id": client_id})
        db.session.execute(insert(Booking), rows)
        db.session.commit()


# --- 1. planning ------------------------------------------------------------------------------------


def measure_planning(company_ids: list[int]) -> dict[str, Any]:
    """Every salon re-planned through the real planner, then the same rows bulk-inserted into a copy."""
    from models import Message, db
    from services.messaging import booking_changes

    [(bookings,)] = db.session.execute(text("SELECT count(*) FROM bookings WHERE company_id = ANY(:ids)"),
                                       {"ids": company_ids}).all()
    started = time.perf_counter()
    planned = 0
    for company_id in company_ids:
        planned += booking_changes.replan_company(company_id)
        db.session.commit()
    planning_s = time.perf_counter() - started

    # The baseline: the same rows, as the planner stored them, into a table of the same shape.
    columns = [c for c in Message.__table__.columns if c.name != "id"]
    rows = [dict(row._mapping) for row in db.session.execute(
        select(*columns).where(Message.company_id.in_(company_ids)))]
    db.session.execute(text("CREATE TABLE bench_messages_copy (LIKE messages INCLUDING ALL)"))
    db.session.commit()
    copy = cast(Table, Message.__table__).to_metadata(MetaData(), name="bench_messages_copy")
    started = time.perf_counter()
    for start in range(0, len(rows), 1000):
        db.session.execute(insert(copy), rows[start:start + 1000])
        db.session.commit()
    insert_s = time.perf_counter() - started
    db.session.execute(text("DROP TABLE bench_messages_copy"))
    db.session.execute(text("ANALYZE"))
    db.session.commit()
    return {"salons": len(company_ids), "bookings": bookings, "messages": planned, "planning_s": planning_s,
            "bookings_per_s": bookings / planning_s, "messages_per_s": planned / planning_s,
            "baseline_rows": len(rows), "baseline_s": insert_s, "baseline_rows_per_s": len(rows) / insert_s,
            "ratio": (planned / planning_s) / (len(rows) / insert_s) if rows and planned else float("nan")}


def mirror_salons(sources: list[int], targets: list[int]) -> int:
    """Give each target salon the bookings, clients and planned messages of a source salon of the same time
    zone (target ``n`` mirrors source ``n % len(sources)``): what the planner would have stored for them,
    since it is a function of (booking, rules) for bookings this far ahead. The messages added."""
    from models import Message, db
    from services.messaging.outbox import idempotency_key
    from services.messaging.templates import Kind

    if not targets:
        return 0
    pairs = [(target, sources[n % len(sources)]) for n, target in enumerate(targets)]
    db.session.execute(text("CREATE TEMPORARY TABLE bench_mirror (company_id int, source_id int)"))
    db.session.execute(text("INSERT INTO bench_mirror VALUES (:t, :s)"), [{"t": t, "s": s} for t, s in pairs])
    db.session.execute(text(
        "INSERT INTO clients (company_id, client_id, name, phone, created_at, updated_at) "
        "SELECT m.company_id, c.client_id, c.name, c.phone, c.created_at, c.updated_at "
        "FROM clients c JOIN bench_mirror m ON m.source_id = c.company_id"))
    db.session.execute(text(
        "INSERT INTO bookings (company_id, record_id, status, starts_at, ends_at, staff_id, staff_name, services, "
        "attendance, client_id, created_at, updated_at) "
        "SELECT m.company_id, b.record_id, b.status, b.starts_at, b.ends_at, b.staff_id, b.staff_name, b.services, "
        "b.attendance, tc.id, b.created_at, b.updated_at FROM bookings b "
        "JOIN bench_mirror m ON m.source_id = b.company_id JOIN clients sc ON sc.id = b.client_id "
        "JOIN clients tc ON tc.company_id = m.company_id AND tc.client_id = sc.client_id"))
    found = db.session.execute(text(
        "SELECT m.company_id, tb.id AS booking_id, msg.phone, msg.kind, msg.slot, msg.state, msg.priority, msg.due_at, "
        "msg.expires_at, msg.created_at FROM messages msg JOIN bench_mirror m ON m.source_id = msg.company_id "
        "JOIN bookings sb ON sb.id = msg.booking_id "
        "JOIN bookings tb ON tb.company_id = m.company_id AND tb.record_id = sb.record_id")).all()
    rows = [{"company_id": r.company_id, "booking_id": r.booking_id, "phone": r.phone, "kind": r.kind, "slot": r.slot,
             "idempotency_key": idempotency_key(r.company_id, r.booking_id, Kind(r.kind), r.slot), "state": r.state,
             "priority": r.priority, "due_at": r.due_at, "expires_at": r.expires_at, "attempts": 0,
             "created_at": r.created_at, "updated_at": r.created_at} for r in found]
    for start in range(0, len(rows), 5000):
        db.session.execute(insert(Message), rows[start:start + 5000])
    db.session.execute(text("DROP TABLE bench_mirror"))
    db.session.execute(text("ANALYZE"))
    db.session.commit()
    return len(rows)


# --- 2. the due query -------------------------------------------------------------------------------


@contextmanager
def _statements(engine: Any) -> Iterator[list[tuple[str, Any]]]:
    """Every SQL statement the engine sends meanwhile, with its parameters."""
    seen: list[tuple[str, Any]] = []

    def record(_conn: Any, _cursor: Any, statement: str, parameters: Any, _context: Any, _many: bool) -> None:
        seen.append((statement, parameters))

    event.listen(engine, "before_cursor_execute", record)
    try:
        yield seen
    finally:
        event.remove(engine, "before_cursor_execute", record)


def _tick(now: datetime) -> tuple[float, int]:
    """One beat tick's queries at ``now`` (ms), rolled back; how many salons it found with work."""
    from models import db
    from services.messaging import dispatch

    started = time.perf_counter()
    dispatch.expire_and_recover(now)
    companies = dispatch.claim_due(now)
    elapsed = (time.perf_counter() - started) * 1000
    db.session.rollback()
    return elapsed, len(companies)


def _explain(engine: Any, now: datetime) -> list[dict[str, Any]]:
    """EXPLAIN (ANALYZE, BUFFERS) of each statement one tick at ``now`` runs, each in a rolled-back transaction."""
    with _statements(engine) as seen:
        _tick(now)
    plans = []
    for statement, parameters in seen:
        if not statement.lstrip().upper().startswith(("SELECT", "UPDATE", "WITH", "INSERT", "DELETE")):
            continue
        connection = engine.raw_connection()
        try:
            cursor = connection.cursor()
            cursor.execute("EXPLAIN (ANALYZE, BUFFERS) " + statement, parameters)
            lines = [row[0] for row in cursor.fetchall()]
        finally:
            connection.rollback()
            connection.close()
        plan = "\n".join(lines)
        plans.append({"statement": " ".join(statement.split()), "plan": plan,
                      "seq_scan_messages": "Seq Scan on messages" in plan,
                      "indexes": sorted({word for line in lines for word in line.replace("(", " ").split()
                                         if word.startswith(("ix_", "pk_", "uq_"))})})
    return plans


@contextmanager
def _due_now(count: int, now: datetime) -> Iterator[int]:
    """``count`` waiting messages (random ones) made due a minute ago, as after an hour the tick could not run
    or an 18:00 wave of confirmation requests; their own due times back afterwards. How many were moved."""
    from models import db

    db.session.execute(text(
        "CREATE TABLE bench_moved AS SELECT id, due_at FROM messages WHERE state = 'planned' "
        "ORDER BY random() LIMIT :n"), {"n": count})
    moved = len(db.session.execute(text(
        "UPDATE messages SET due_at = :due FROM bench_moved WHERE messages.id = bench_moved.id RETURNING messages.id"),
        {"due": now - timedelta(minutes=1)}).all())
    db.session.execute(text("ANALYZE messages"))
    db.session.commit()
    try:
        yield moved
    finally:
        db.session.rollback()
        db.session.execute(text(
            "UPDATE messages SET due_at = bench_moved.due_at FROM bench_moved WHERE messages.id = bench_moved.id"))
        db.session.execute(text("DROP TABLE bench_moved"))
        db.session.commit()


def _ticks(count: int, now: datetime) -> dict[str, Any]:
    from models import db

    for _ in range(3):  # warm the cache and the connection
        _tick(now)
    times, found = [], 0
    for _ in range(count):
        elapsed, found = _tick(now)
        times.append(elapsed)
    return {"p50_ms": percentile(times, 50), "p99_ms": percentile(times, 99), "max_ms": max(times),
            "salons_with_work": found, "explain": _explain(db.engine, now)}


def measure_due_query(ticks: int, backlog: int) -> dict[str, Any]:
    """p50/p99 of the tick's queries with nothing due, a full batch due and a backlog due; their plans."""
    from models import db
    from services.messaging import dispatch

    [(waiting, total)] = db.session.execute(text(
        "SELECT count(*) FILTER (WHERE state IN ('planned', 'queued')), count(*) FROM messages")).all()
    db.session.rollback()
    results: dict[str, Any] = {"messages": total, "waiting": waiting, "batch": dispatch.BATCH, "scenarios": {}}
    now = datetime.now(UTC)
    results["scenarios"]["nothing due"] = _ticks(ticks, now)
    for count in (3 * dispatch.BATCH, backlog):
        with _due_now(count, now) as moved:
            results["scenarios"][f"{moved} due"] = _ticks(ticks, now)
    return results


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
    _book(company_ids, per_number * len(company_ids), first_record, seed=2)
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

    company_ids = _link_salons(args.numbers, first_salon_id=5_000_000)
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
    repeated = sum(count - 1 for count in Counter((e["chatId"], e["text"], e["id"]) for e in texts).values())
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


# --- the run ----------------------------------------------------------------------------------------


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Every measurement, on a fresh database and Redis namespace; the results as a dict."""
    name, database_url = create_database()
    from services.platform.schema import upgrade

    upgrade(database_url)
    namespace = f"bench{uuid.uuid4().hex[:6]}"
    env = _environment(database_url, namespace, args.log_level)
    os.environ.update(env)
    from web import create_app

    tmp = Path(tempfile.mkdtemp(prefix="bench-messaging-"))
    results: dict[str, Any] = {"settings": vars(args).copy(), "log_dir": str(tmp)}
    app = None
    try:
        app = create_app()
        with app.app_context():
            if args.bookings:
                salons = _link_salons(args.salons, first_salon_id=1_000_000)
                planned = salons[:args.planned_salons or len(salons)]
                _book(planned, args.bookings * len(planned) // len(salons), first_record=1, seed=1)
                results["planning"] = measure_planning(planned)
                results["planning"]["mirrored_salons"] = len(salons) - len(planned)
                results["planning"]["mirrored_messages"] = mirror_salons(planned, salons[len(planned):])
                results["due"] = measure_due_query(args.ticks, args.backlog)
            if args.numbers:
                results["dispatch"] = measure_dispatch(app, env, args, tmp)
    finally:
        if app is not None:
            from models import db

            with app.app_context():
                db.session.remove()
                db.engine.dispose()
            redis = app.extensions["redis"]
            for key in redis.scan_iter(f"{namespace}:*", count=1000):
                redis.delete(key)
        if not args.keep_database:
            drop_database(name)
    return results


# --- the report -------------------------------------------------------------------------------------


def _met(ok: bool) -> str:
    return "met" if ok else "**missed**"


def report(results: dict[str, Any]) -> str:
    """The "Messaging" section of docs/BENCHMARKS.md."""
    args = results["settings"]
    lines = [HEADING, "",
             f"`python -m bench.messaging {' '.join(sys.argv[1:])}`, {datetime.now(UTC):%Y-%m-%d}: "
             f"{os.cpu_count()} CPU ({os.uname().machine}) shared with other work; PostgreSQL and Redis on "
             "127.0.0.1 (shared servers), a fresh database migrated to head, APP_ENV=production.", ""]
    if "planning" in results:
        p, d = results["planning"], results["due"]
        lines += [
            "| measurement | result | target |", "|---|---|---|",
            f"| planning through `replan_company`, {p['salons']} salons, {p['bookings']} future bookings | "
            f"{p['planning_s']:.1f} s: {p['bookings_per_s']:.0f} bookings/s, {p['messages']} messages, "
            f"{p['messages_per_s']:.0f} messages/s |  |",
            f"| bulk INSERT of the same {p['baseline_rows']} rows (batches of 1000, same indexes) | "
            f"{p['baseline_s']:.1f} s: {p['baseline_rows_per_s']:.0f} rows/s |  |",
            f"| planning messages/s ÷ bulk INSERT rows/s | {p['ratio']:.3f} |  |",
        ]
        if p.get("mirrored_salons"):
            lines.append(f"| the other {p['mirrored_salons']} salons mirror those (same zones and bookings): "
                         f"messages copied, not planned | {p['mirrored_messages']} messages |  |")
        for name, s in d["scenarios"].items():
            scans = any(e["seq_scan_messages"] for e in s["explain"])
            lines.append(f"| beat tick's queries, {d['messages']} messages ({d['waiting']} waiting), {name} | "
                         f"p50 {s['p50_ms']:.1f} ms, p99 {s['p99_ms']:.1f} ms, max {s['max_ms']:.1f} ms "
                         f"({args['ticks']} ticks; {s['salons_with_work']} salons with work) | "
                         f"p99 ≤ {TARGET_TICK_MS:.0f} ms: {_met(s['p99_ms'] <= TARGET_TICK_MS)}"
                         f"{'; **scans all messages**' if scans else ''} |")
    if "dispatch" in results:
        x = results["dispatch"]
        full = TARGET_NUMBERS * TARGET_PER_MINUTE / 60
        load = x.get("load_average")
        load_note = f" (machine load average {load:.1f} at the window's end)" if load is not None else ""
        if "planning" not in results:
            lines += ["| measurement | result | target |", "|---|---|---|"]
        lines += [
            f"| dispatch: {x['numbers']} numbers, worker prefork × {x['concurrency']} + beat, simulator, "
            f"{x['window_s']:.0f} s window | {x['sent']} sent: {x['per_number_per_minute']:.2f} per number per "
            f"minute, {x['share_of_pacing']:.0%} of what pacing allows ({x['pacing_mean_per_minute']:.2f}/min: the "
            f"{x['min_gap_s']:.0f} s gap × mean jitter; cap {x['pacing_cap_per_minute']:.0f}/min) | "
            f"≥ 95 % of pacing: {_met(x['share_of_pacing'] >= 0.95)} |",
            f"| worker CPU (all its processes) / beat CPU over the window | {x['worker_cores']:.2f} / "
            f"{x['beat_cores']:.2f} cores; {x['cpu_s_per_message'] * 1000:.1f} ms worker CPU per message"
            f"{load_note} |  |",
            f"| … at {TARGET_NUMBERS} numbers × {TARGET_PER_MINUTE}/min = {full:.1f} messages/s (extrapolated) | "
            f"{full * x['cpu_s_per_message']:.2f} cores of worker CPU = "
            f"{full * x['cpu_s_per_message'] / (x['cores'] or 1):.0%} of this {x['cores']}-core machine | "
            f"< 50 %: {_met(full * x['cpu_s_per_message'] / (x['cores'] or 1) < 0.5)} |",
            f"| simulator outbox: texts, sent twice, closest gap of one number | {x['texts_in_outbox']}, "
            f"{x['sent_twice']}, {x['closest_gap_s']:.3f} s (minimum {x['min_gap_s']:.0f} s) | none twice, gap ≥ "
            f"minimum − {GAP_TOLERANCE_S * 1000:.0f} ms: "
            f"{_met(x['sent_twice'] == 0 and not x['closest_gap_s'] < x['min_gap_s'] - GAP_TOLERANCE_S)} |",
        ]
    if "dispatch" in results:
        lines += ["", "Measured: planning, the tick's queries and dispatch at the sizes above. Extrapolated: the "
                  f"CPU at {TARGET_NUMBERS} numbers, as the measured worker CPU per message × {full:.1f} messages/s. "
                  "Per message the worker runs a dispatcher (about 1.5 times: a text typed for less time than the "
                  "one before finds its slot not yet open), a deliver task, a task per gateway receipt (sent, "
                  "delivered) and, with the simulator, its ack timer; its main process also publishes Celery's task "
                  "events for Flower."]
    if "due" in results:
        lines += ["", "The tick's statements (EXPLAIN (ANALYZE, BUFFERS), the heaviest scenario):", ""]
        heaviest = list(results["due"]["scenarios"].values())[-1]
        for found in heaviest["explain"]:
            lines += ["```", found["statement"][:400], "", found["plan"], "```", ""]
    return "\n".join(lines).rstrip() + "\n"


def main() -> None:
    """Parse options, run, print (and optionally record) the results."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--salons", type=int, default=100, help="the issue's size: 1000")
    parser.add_argument("--bookings", type=int, default=10_000,
                        help="the issue's size: 100000; 0: skip planning and the due query")
    parser.add_argument("--planned-salons", type=int, default=0,
                        help="plan only this many salons through the planner; the others mirror their rows "
                             "(same zone, same bookings), so the due query runs at full size sooner (0: all)")
    parser.add_argument("--ticks", type=int, default=200)
    parser.add_argument("--backlog", type=int, default=10_000)
    parser.add_argument("--numbers", type=int, default=100, help="the issue's size: 1000; 0: skip dispatch")
    parser.add_argument("--per-number", type=int, default=0,
                        help="booking messages due per number (default: enough for the warm-up and window)")
    parser.add_argument("--window", type=float, default=60.0)
    parser.add_argument("--warmup", type=float, default=20.0)
    parser.add_argument("--worker-concurrency", type=int, default=2)
    parser.add_argument("--log-level", default="WARNING")
    parser.add_argument("--keep-database", action="store_true")
    parser.add_argument("--write", action="store_true", help="record the results in docs/BENCHMARKS.md")
    args = parser.parse_args()
    if args.planned_salons % len(ZONES):
        parser.error(f"--planned-salons: a multiple of {len(ZONES)}, so each mirror has its source's time zone")
    if not args.per_number:
        args.per_number = int((args.warmup + args.window) / 60 * TARGET_PER_MINUTE) + 4
    results = run(args)
    publish(results, HEADING, report(results), args.write)


if __name__ == "__main__":
    main()
