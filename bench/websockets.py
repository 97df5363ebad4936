"""How many idle WebSockets one gunicorn gthread process holds while HTTP still answers fast.

Starts one gunicorn worker process (gthread, ``--threads`` as given) on a scratch SQLite database
and a Redis namespace of its own, opens authenticated idle sockets in steps, and at each step
measures: HTTP latency of a cheap endpoint (p50/p95/max of sequential requests), the time for one
published event to reach every open socket, and the process's RSS and thread count.

    .venv/bin/python -m bench.websockets --threads 64 256 1024 --steps 50 200 500 1000 [--write]

``--write`` replaces the table of the "WebSockets" section of docs/BENCHMARKS.md (its prose stays).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid

import redis
from simple_websocket import Client, ConnectionClosed

from bench.harness import ROOT, create_company, free_port, http_latency, process_stats, stop, wait_http, write_table

HEADING = "## WebSockets: idle sockets per web process"
ADMIN_KEY = "sk_bench_admin_key_0123456789abcdefghijklmnop"


class Socket:
    """An authenticated idle client; ``seen`` is set when the probe event arrives."""

    def __init__(self, url: str, token: str, company_id: int) -> None:
        self.ws = Client.connect(url)
        self.ws.send(json.dumps({"event": "authenticate", "data": {"token": token, "companyId": company_id}}))
        self.seen = threading.Event()
        self.ready = threading.Event()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        try:
            while True:
                raw = self.ws.receive()
                event = json.loads(raw)["event"] if raw else None
                if event == "status":
                    self.ready.set()
                elif event == "bench.probe":
                    self.seen.set()
        except (ConnectionClosed, OSError, ValueError):
            pass


def _http_latency(base: str) -> tuple[float, float, float, int]:
    """p50, p95, max (ms) of GET /marketplace/health/live, and how many failed."""
    times, failures = http_latency(base + "/marketplace/health/live")
    if not times:
        return float("inf"), float("inf"), float("inf"), failures
    times.sort()
    return statistics.median(times), times[int(len(times) * 0.95) - 1], times[-1], failures


def _fanout_ms(client: redis.Redis, namespace: str, company_id: int, sockets: list[Socket]) -> float:
    for sock in sockets:
        sock.seen.clear()
    message = {"event": "bench.probe", "company_id": company_id, "data": {}}
    started = time.perf_counter()
    client.publish(f"{namespace}:events:company:{company_id}", json.dumps(message))
    deadline = time.monotonic() + 30
    for sock in sockets:
        sock.seen.wait(max(0.0, deadline - time.monotonic()))
    return (time.perf_counter() - started) * 1000


def run(threads: int, steps: list[int], redis_url: str, port: int) -> list[dict[str, float]]:
    """Measure one gunicorn process with ``threads`` threads at each socket count of ``steps``."""
    namespace = f"bench{uuid.uuid4().hex[:6]}"
    scratch = tempfile.mkdtemp(prefix="ycwa-bench-")
    env = {**os.environ, "APP_ENV": "test", "DATABASE_URL": f"sqlite:///{scratch}/bench.db", "REDIS_URL": redis_url,
           "REDIS_NAMESPACE": namespace, "RATELIMIT_ENABLED": "false", "ADMIN_API_KEY": ADMIN_KEY,
           "LOG_LEVEL": "WARNING", "SECRET_KEY": "bench-secret-key-0123456789-abcdefghijklmnop"}
    migrate = f"from services.platform.schema import upgrade; upgrade({env['DATABASE_URL']!r})"
    subprocess.run([sys.executable, "-c", migrate], cwd=ROOT, env=env, check=True)
    company = create_company(env, salon_id=int(time.time()))
    company_id, token = company.id, company.connect_token
    base = f"http://127.0.0.1:{port}"
    server = subprocess.Popen(
        [sys.executable, "-m", "gunicorn", "-c", str(ROOT / "gunicorn.conf.py"), "--bind", f"127.0.0.1:{port}",
         "--workers", "1", "--threads", str(threads), "wsgi:app"],
        cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
    )
    results: list[dict[str, float]] = []
    sockets: list[Socket] = []
    client = redis.Redis.from_url(redis_url)
    try:
        wait_http(base + "/marketplace/test", server, timeout=20)
        url = base.replace("http://", "ws://") + "/marketplace/ws"
        for target in [0, *steps]:
            try:
                while len(sockets) < target:
                    sockets.append(Socket(url, token, company_id))
                    if len(sockets) % 50 == 0:
                        sockets[-1].ready.wait(10)
            except (OSError, ConnectionClosed) as exc:
                print(f"  could not open socket {len(sockets) + 1}: {exc}", file=sys.stderr)
                break
            authenticated = sum(s.ready.wait(10) for s in sockets)
            p50, p95, worst, failures = _http_latency(base)
            fanout = _fanout_ms(client, namespace, company_id, sockets) if sockets else 0.0
            received = sum(s.seen.is_set() for s in sockets)
            rss, thread_count = process_stats(server.pid)
            row = {"threads": threads, "sockets": len(sockets), "authenticated": authenticated, "http_p50_ms": p50,
                   "http_p95_ms": p95, "http_max_ms": worst, "http_failures": failures, "fanout_ms": fanout,
                   "fanout_received": received, "rss_mib": rss, "os_threads": thread_count}
            results.append(row)
            print("  " + ", ".join(f"{k}={v:.1f}" if isinstance(v, float) else f"{k}={v}" for k, v in row.items()),
                  flush=True)
            if len(sockets) < target:
                break
    finally:
        for sock in sockets:
            try:
                sock.ws.close()
            except (ConnectionClosed, OSError):
                pass
        stop(server)
        for key in client.scan_iter(f"{namespace}:*"):
            client.delete(key)
        client.close()
    return results


def main() -> int:
    """Run the measurement and print a Markdown table."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--threads", type=int, nargs="+", default=[64, 256, 1024])
    parser.add_argument("--steps", type=int, nargs="+", default=[50, 200, 500, 1000])
    parser.add_argument("--redis-url", default=os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0"))
    parser.add_argument("--port", type=int, default=0, help="default: a free port")
    parser.add_argument("--write", action="store_true", help="record the table in docs/BENCHMARKS.md")
    args = parser.parse_args()
    rows: list[dict[str, float]] = []
    for threads in args.threads:
        print(f"gthread, 1 worker, {threads} threads", flush=True)
        port = args.port or free_port()
        rows += run(threads, [s for s in args.steps if s <= threads + 8] or args.steps[:1], args.redis_url, port)
    lines = ["| threads | idle sockets | HTTP p50 / p95 / max (ms) | HTTP failures | fan-out to all (ms) | RSS (MiB) "
             "| OS threads |", "|---|---|---|---|---|---|---|"]
    for r in rows:
        http = "no answer" if r["http_failures"] >= 3 else (
            f"{r['http_p50_ms']:.1f} / {r['http_p95_ms']:.1f} / {r['http_max_ms']:.1f}")
        fanout = f"{r['fanout_ms']:.0f}" if r["sockets"] else "–"
        lines.append(f"| {r['threads']} | {r['sockets']} | {http} | {r['http_failures']} | {fanout} "
                     f"| {r['rss_mib']:.0f} | {r['os_threads']} |")
    table = "\n".join(lines)
    print("\n" + table)
    if args.write:
        write_table(HEADING, table)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
