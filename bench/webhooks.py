"""Webhook ingestion under load, against a bare Flask route on the same gunicorn, with a real worker.

Starts gunicorn (this repository's ``gunicorn.conf.py``) serving the real app plus one bare route
``POST /bench/bare`` returning ``{"success": true}``, and a Celery worker, on a fresh PostgreSQL
database and a Redis namespace of their own (both on 127.0.0.1). Then, with ``wrk`` and a Lua script
that posts a new booking id with every request:

1. peak requests/s of the webhook and of the bare route (same connections, threads, duration), and
   the CPU time each request cost the web processes, PostgreSQL, Redis and the worker (from /proc);
2. acknowledgement latency p50/p99 at about half the webhook's peak rate (wrk paced by the Lua
   ``delay()`` hook: a closed loop, so queueing delays are not corrected as wrk2 would), and the
   bare route's at the same offered rate, as the box's own floor;
3. received → processed latency p50/p99 from the inbox rows of the paced run;
4. after the worker drained the inbox: every acknowledged delivery is stored and processed exactly
   once (one inbox row and one booking per id, ``attempts == 1``, no storage failure logged).

    .venv/bin/python -m bench.webhooks [--duration 10] [--connections 16] [--write]

``--write`` replaces the "Webhook ingestion" section of docs/BENCHMARKS.md with the results.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from flask import Flask, jsonify

from bench.harness import (
    REDIS_URL,
    ROOT,
    cpu_seconds,
    create_company,
    create_database,
    drop_database,
    percentile,
    publish,
    query,
    stop,
    wait_http,
)
from bench.webhook_report import HEADING, report

LUA = r"""
counter = 0
local threads = {}
function setup(thread)
  table.insert(threads, thread)
  thread:set("tid", #threads)
end
function init(args)
  path = args[1]; base = tonumber(args[2]); pause = tonumber(args[3])
  wrk.headers["Content-Type"] = "application/json"
end
function request()
  counter = counter + 1
  local id = base + tid * 100000000 + counter
  local body = string.format('{"type":"booking_created","created_at":"2024-09-16T10:30:00Z","data":{"id":%d,' ..
    '"client_id":67890,"service_id":45,"staff_id":3,"datetime":"2024-09-17T15:00:00","comment":"bench"}}', id)
  return wrk.format("POST", path, nil, body)
end
function delay()
  return pause
end
function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format('RESULT {"requests":%d,"duration_us":%d,"non2xx":%d,"socket_errors":%d,' ..
    '"p50_us":%d,"p99_us":%d,"max_us":%d}\n', summary.requests, summary.duration, e.status,
    e.connect + e.read + e.write + e.timeout, latency:percentile(50), latency:percentile(99), latency.max))
end
"""


def bench_app() -> Flask:
    """The service's app plus the bare reference route (gunicorn factory: ``bench.webhooks:bench_app()``)."""
    from web import create_app
    from web.limits import unlimited

    app = create_app()

    @app.post("/bench/bare")
    @unlimited
    def bare() -> Any:
        return jsonify(success=True)

    if os.environ.get("BENCH_STEPS"):
        _add_step_routes(app)
    return app


STEPS = ("view", "handoff", "parse", "webhook")


def _add_step_routes(app: Flask) -> None:
    """``POST /bench/step/<step>/<company_id>``: the webhook route stopped after each step of its path."""
    from flask import request

    from services.webhooks import inbox_rows, writer
    from web.limits import unlimited
    from web.marketplace.webhooks import read_body

    class StoresNothing(writer.InboxWriter):
        def _write(self, batch: list[Any], conn: Any, counter: Any = None) -> list[int]:
            return []

    class ParsesOnly(writer.InboxWriter):
        def _write(self, batch: list[Any], conn: Any, counter: Any = None) -> list[int]:
            companies = inbox_rows.companies_named(batch, conn)
            for item in batch:
                inbox_rows.row_values(item, companies)
            return []

    writers = {"handoff": StoresNothing(app), "parse": ParsesOnly(app)}

    @app.post("/bench/step/<step>/<int:company_id>")
    @unlimited
    def step(step: str, company_id: int) -> Any:
        secret, body = request.args.get("secret"), read_body()
        if step in writers:
            writers[step].submit(company_id, secret, body, None)
        return jsonify(success=True)


def _wrk(url: str, script: Path, path: str, base: int, args: argparse.Namespace, pause_ms: int = 0,
         connections: int | None = None) -> dict[str, Any]:
    before = cpu_seconds()
    command = ["wrk", "-t", str(args.threads), "-c", str(connections or args.connections), "-d", f"{args.duration}s",
               "--timeout", "5s", "-s", str(script), url, "--", path, str(base), str(pause_ms)]
    out = subprocess.run(command, capture_output=True, text=True, check=True).stdout
    result: dict[str, Any] = json.loads(out.split("RESULT ", 1)[1].splitlines()[0])
    result["rps"] = result["requests"] / (result["duration_us"] / 1e6)
    result["acked"] = result["requests"] - result["non2xx"]
    # CPU ms per request while the load ran (the worker's includes what it processed meanwhile).
    result["cpu_ms"] = {name: round((spent - before[name]) * 1000 / max(1, result["requests"]), 3)
                        for name, spent in cpu_seconds().items()}
    return result


def _drain(database_url: str, timeout: float) -> float:
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        [(pending,)] = query(database_url, "SELECT count(*) FROM webhook_events WHERE status IN "
                                            "('received', 'processing', 'failed')")
        if pending == 0:
            return time.monotonic() - started
        time.sleep(0.5)
    raise RuntimeError(f"the worker did not drain the inbox within {timeout}s")


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Run every measurement; the results as a dict."""
    name, database_url = create_database()
    from services.platform.schema import upgrade

    upgrade(database_url)
    namespace = f"bench{uuid.uuid4().hex[:6]}"
    port = args.port
    env = {**os.environ, "APP_ENV": "production", "DATABASE_URL": database_url, "REDIS_URL": REDIS_URL,
           "BENCH_STEPS": "1" if args.steps else "",
           "REDIS_NAMESPACE": namespace, "SECRET_KEY": "bench-secret-key-0123456789-abcdefghijklmnop",
           "PUBLIC_BASE_URL": f"http://127.0.0.1:{port}", "LOG_LEVEL": args.log_level, "PYTHONUNBUFFERED": "1"}
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    company = create_company(env, salon_id=962302)
    company_id, secret = company.id, company.webhook_secret
    tmp = Path(tempfile.mkdtemp(prefix="bench-webhooks-"))
    script = tmp / "post.lua"
    script.write_text(LUA)
    web_log, worker_log = open(tmp / "web.log", "wb"), open(tmp / "worker.log", "wb")  # noqa: SIM115
    web = subprocess.Popen(
        [sys.executable, "-m", "gunicorn", "-c", str(ROOT / "gunicorn.conf.py"), "--bind", f"127.0.0.1:{port}",
         "--workers", str(args.web_workers), "--threads", str(args.web_threads), "bench.webhooks:bench_app()"],
        env=env, cwd=ROOT, stdout=web_log, stderr=subprocess.STDOUT, start_new_session=True)
    worker = subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", "wsgi:celery_app", "worker", "--loglevel", "WARNING", "--pool",
         "prefork", "--concurrency", str(args.worker_concurrency), "--without-mingle", "--without-gossip"],
        env=env, cwd=ROOT, stdout=worker_log, stderr=subprocess.STDOUT, start_new_session=True)
    base_url = f"http://127.0.0.1:{port}"
    webhook_path = f"/marketplace/webhook/{company_id}?secret={secret}"
    results: dict[str, Any] = {"settings": vars(args).copy(), "log_dir": str(tmp)}
    try:
        wait_http(base_url + "/marketplace/health/live", web)
        _wrk(base_url, script, "/bench/bare", 0, args, connections=4)  # warm-up of both routes
        warm = _wrk(base_url, script, webhook_path, 9 * 10**12, args, connections=4)
        _drain(database_url, 120)
        bare, hook, alone = [], [], []
        for round_no in range(args.rounds):  # interleaved, so a noisy neighbour hurts both alike
            bare.append(_wrk(base_url, script, "/bench/bare", 0, args))
            # Ingestion alone: the worker is paused (SIGSTOP), events pile up stored, then drain.
            os.killpg(worker.pid, signal.SIGSTOP)
            try:
                alone.append(_wrk(base_url, script, webhook_path, (round_no + 1) * 10**12, args))
            finally:
                os.killpg(worker.pid, signal.SIGCONT)
            results.setdefault("drain_s", []).append(round(_drain(database_url, 600), 1))
            hook.append(_wrk(base_url, script, webhook_path, (round_no + 11) * 10**12, args))
            results["drain_s"].append(round(_drain(database_url, 600), 1))
        results["bare"] = max(bare, key=lambda r: r["rps"])
        results["webhook_alone"] = max(alone, key=lambda r: r["rps"])
        results["webhook"] = max(hook, key=lambda r: r["rps"])
        results["ratio_alone"] = results["webhook_alone"]["rps"] / results["bare"]["rps"]
        results["ratio"] = results["webhook"]["rps"] / results["bare"]["rps"]

        # Half the peak: each connection pauses so that together they offer ~peak/2 requests/s.
        target = results["webhook_alone"]["rps"] / 2
        pace_connections = args.connections
        pause_ms = max(0, int(pace_connections / target * 1000) - 2)
        [(before,)] = query(database_url, "SELECT coalesce(max(id), 0) FROM webhook_events")
        paced = _wrk(base_url, script, webhook_path, 50 * 10**12, args, pause_ms=pause_ms,
                     connections=pace_connections)
        paced["target_rps"] = target
        paced["pause_ms"] = pause_ms
        results["paced"] = paced
        results["drain_after_paced_s"] = round(_drain(database_url, 600), 1)
        results["paced_bare"] = _wrk(base_url, script, "/bench/bare", 0, args, pause_ms=pause_ms,
                                     connections=pace_connections)
        lags = [row[0] for row in query(
            database_url, "SELECT extract(epoch FROM processed_at - received_at) FROM webhook_events WHERE id > %s",
            before)]
        results["e2e_ms"] = {"p50": percentile(lags, 50) * 1000, "p99": percentile(lags, 99) * 1000,
                             "mean": statistics.fmean(lags) * 1000 if lags else float("nan")}
        acked = warm["acked"] + sum(r["acked"] for r in hook + alone) + paced["acked"]
        results["verify"] = verify(database_url, acked, tmp / "web.log")
        if args.steps:  # ingestion alone, like the ratio: the worker is paused meanwhile
            os.killpg(worker.pid, signal.SIGSTOP)
            try:
                results["steps"] = _steps(base_url, script, webhook_path, company_id, args)
            finally:
                os.killpg(worker.pid, signal.SIGCONT)
    finally:
        stop(web)
        stop(worker)
        web_log.close()
        worker_log.close()
        if not args.keep_database:
            drop_database(name)
    return results


def _steps(base_url: str, script: Path, webhook_path: str, company_id: int,
           args: argparse.Namespace) -> dict[str, dict[str, float]]:
    """Each step of the webhook path, interleaved: the median share of the bare route's requests/s,
    and the median CPU ms per request of the web processes and of PostgreSQL."""
    query = webhook_path.split("?", 1)[1]
    paths = {"bare": "/bench/bare", **{name: f"/bench/step/{name}/{company_id}?{query}" for name in STEPS[:-1]},
             "webhook": webhook_path}
    runs: dict[str, list[dict[str, Any]]] = {name: [] for name in paths}
    for round_no in range(args.rounds):
        for n, (name, path) in enumerate(paths.items()):
            runs[name].append(_wrk(base_url, script, path, (60 + 10 * round_no + n) * 10**12, args))
    bare = statistics.median(r["rps"] for r in runs["bare"])
    return {name: {"share": statistics.median(r["rps"] for r in found) / bare,
                   "web_ms": statistics.median(r["cpu_ms"]["web"] for r in found),
                   "postgresql_ms": statistics.median(r["cpu_ms"]["postgresql"] for r in found)}
            for name, found in runs.items()}


def verify(database_url: str, acked: int, web_log: Path) -> dict[str, Any]:
    """Every acknowledged delivery stored once and processed once."""
    [(stored, processed, other_attempts, distinct_ids)] = query(
        database_url,
        "SELECT count(*), count(*) FILTER (WHERE status = 'processed'), count(*) FILTER (WHERE attempts <> 1), "
        "count(DISTINCT payload->'data'->>'id') FROM webhook_events WHERE status <> 'rejected'")
    [(bookings, mismatched)] = query(
        database_url,
        "SELECT count(*), count(*) FILTER (WHERE e.id IS NULL OR e.status <> 'processed') FROM bookings b "
        "LEFT JOIN webhook_events e ON e.id = b.last_event_id")
    [(rejected,)] = query(database_url, "SELECT count(*) FROM webhook_events WHERE status = 'rejected'")
    store_failures = web_log.read_text(errors="replace").count("could not be stored")
    ok = (stored >= acked and processed == stored and other_attempts == 0 and distinct_ids == stored
          and bookings == stored and mismatched == 0 and rejected == 0 and store_failures == 0)
    return {"acknowledged_at_least": acked, "stored": stored, "processed": processed,
            "attempts_not_1": other_attempts, "bookings": bookings, "rejected": rejected,
            "store_failures": store_failures, "lost": max(0, acked - processed), "ok": ok}


def main() -> None:
    """Parse options, run, print (and optionally record) the results."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--duration", type=int, default=10)
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--web-workers", type=int, default=2)
    parser.add_argument("--web-threads", type=int, default=16)
    parser.add_argument("--worker-concurrency", type=int, default=2)
    parser.add_argument("--log-level", default="INFO")
    parser.add_argument("--port", type=int, default=18631)
    parser.add_argument("--keep-database", action="store_true")
    parser.add_argument("--steps", action="store_true",
                        help="also measure the webhook path stopped after each step (view, hand-off, parse)")
    parser.add_argument("--write", action="store_true", help="record the results in docs/BENCHMARKS.md")
    args = parser.parse_args()
    results = run(args)
    publish(results, HEADING, report(results), args.write)
    sys.exit(0 if results["verify"]["ok"] else 1)


if __name__ == "__main__":
    main()
