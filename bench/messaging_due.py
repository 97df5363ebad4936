"""bench.messaging's due query: the beat tick's statements timed at salon scale, and their plans."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import event, text

from bench.harness import percentile

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
