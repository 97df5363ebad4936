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
import os
import sys
import tempfile
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench.harness import (
    REDIS_URL,
    create_database,
    drop_database,
    publish,
)
from bench.messaging_dispatch import measure_dispatch
from bench.messaging_due import measure_due_query
from bench.messaging_salons import ZONES, book, link_salons, measure_planning, mirror_salons

HEADING = "## Messaging"
TARGET_TICK_MS = 50.0
TARGET_NUMBERS, TARGET_PER_MINUTE = 1000, 4
# The pacer stamps a send before its commit and the gateway call; the gateway's clock sees that jitter too.
GAP_TOLERANCE_S = 0.05


def _environment(database_url: str, namespace: str, log_level: str) -> dict[str, str]:
    env = {**os.environ, "APP_ENV": "production", "DATABASE_URL": database_url, "REDIS_URL": REDIS_URL,
           "REDIS_NAMESPACE": namespace, "SECRET_KEY": "bench-secret-key-0123456789-abcdefghijklmnop",
           "PUBLIC_BASE_URL": "http://127.0.0.1:9", "WHATSAPP_GATEWAY": "simulator", "LOG_LEVEL": log_level,
           "DATABASE_POOL_SIZE": "2", "PYTHONUNBUFFERED": "1"}
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    return env


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
                salons = link_salons(args.salons, first_salon_id=1_000_000)
                planned = salons[:args.planned_salons or len(salons)]
                book(planned, args.bookings * len(planned) // len(salons), first_record=1, seed=1)
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
                  "Per message the worker runs a dispatcher once (a text shorter than the one before is booked at "
                  "its number's next slot) and a deliver task, and a share of two tasks that run once a second: "
                  "the receipts batch and, with the simulator, its phones' confirmations (a real gateway's work, "
                  "done outside the worker); its main process also publishes the worker's task events for Flower "
                  "(no task-sent events)."]
    if "due" in results:
        lines += ["", "The tick's statements (EXPLAIN (ANALYZE, BUFFERS), the heaviest scenario):", ""]
        heaviest = list(results["due"]["scenarios"].values())[-1]
        for found in heaviest["explain"]:
            lines += ["```", found["statement"][:400], "", found["plan"], "```", ""]
    return "\n".join(lines).rstrip() + "\n"


def main() -> None:
    """Parse options, run, print (and optionally record) the results."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--salons", type=int, default=100, help="the targets' size: 1000")
    parser.add_argument("--bookings", type=int, default=10_000,
                        help="the targets' size: 100000; 0: skip planning and the due query")
    parser.add_argument("--planned-salons", type=int, default=0,
                        help="plan only this many salons through the planner; the others mirror their rows "
                             "(same zone, same bookings), so the due query runs at full size sooner (0: all)")
    parser.add_argument("--ticks", type=int, default=200)
    parser.add_argument("--backlog", type=int, default=10_000)
    parser.add_argument("--numbers", type=int, default=100, help="the targets' size: 1000; 0: skip dispatch")
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
