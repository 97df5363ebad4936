"""Reachability of the database, the broker, the worker and beat."""

from __future__ import annotations

import time
import uuid
from typing import Any

from sqlalchemy import text

from models import db
from services.platform import runtime
from services.platform.jobs import Job, enqueue

BEAT_STALE_AFTER = 60.0


def pong(nonce: str, worker: str) -> dict[str, Any]:
    """What a worker answers to ``health.ping`` (the readiness check's round trip)."""
    return {"nonce": nonce, "worker": worker, "at": time.time()}


def record_beat(at: float) -> None:
    """Store beat's latest heartbeat."""
    runtime.redis().set(runtime.settings().key("beat", "heartbeat"), at, ex=3600)


def check(fn: Any) -> dict[str, Any]:
    """Run one check: its answer with the latency, or ``{ok: false, error}`` when it raised."""
    started = time.perf_counter()
    try:
        detail = fn()
    except Exception as exc:  # any failure makes the dependency "down"; the reason is reported
        return {"ok": False, "error": type(exc).__name__ + ": " + str(exc)[:200]}
    result = {"ok": True, "latency_ms": round((time.perf_counter() - started) * 1000, 1)}
    if detail:
        result.update(detail)
    return result


def _database() -> None:
    db.session.execute(text("SELECT 1"))
    db.session.rollback()


def _broker() -> None:
    runtime.redis().ping()


def _worker(timeout: float) -> dict[str, Any]:
    nonce = uuid.uuid4().hex
    result = enqueue(Job.HEALTH_PING, nonce, after_commit=False)
    assert result is not None
    try:
        answer = result.get(timeout=timeout)
    finally:
        result.forget()
    if answer.get("nonce") != nonce:
        raise RuntimeError("worker answered another ping")
    return {"worker": answer.get("worker")}


def _beat() -> dict[str, Any]:
    raw = runtime.redis().get(runtime.settings().key("beat", "heartbeat"))
    if raw is None:
        return {"ok": False, "error": "no heartbeat yet"}
    age = time.time() - float(raw)  # type: ignore[arg-type]
    return {"ok": age < BEAT_STALE_AFTER, "age_seconds": round(age, 1)}


def report(worker_timeout: float = 3.0) -> tuple[bool, dict[str, Any]]:
    """Check every dependency; ready means database, broker and a worker all answered."""
    checks = {"database": check(_database), "broker": check(_broker)}
    if checks["broker"]["ok"]:
        checks["worker"] = check(lambda: _worker(worker_timeout))
    else:
        checks["worker"] = {"ok": False, "error": "broker unreachable"}
    checks["beat"] = check(_beat)  # reported, but scheduling lag does not make the web unready
    ready = all(checks[name]["ok"] for name in ("database", "broker", "worker"))
    return ready, checks
