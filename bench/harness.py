"""What the benchmarks share: the servers they start and stop, the scratch database, /proc readings
and the sections of docs/BENCHMARKS.md they write."""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
import time
import urllib.request
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg2

ROOT = Path(__file__).resolve().parent.parent
DOC = ROOT / "docs" / "BENCHMARKS.md"
PG_ADMIN_URL = os.environ.get("BENCH_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")
REDIS_URL = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/0")
# Which processes on this machine count as which component (by a marker in their command line).
COMPONENTS = {"web": b"gunicorn", "worker": b"celery", "postgresql": b"postgres", "redis": b"redis-server"}


def free_port() -> int:
    """A TCP port nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def create_database() -> tuple[str, str]:
    """A fresh PostgreSQL database: its name and URL."""
    name = f"ycwa_bench_{uuid.uuid4().hex[:8]}"
    _admin(f'CREATE DATABASE "{name}"')
    return name, PG_ADMIN_URL.rsplit("/", 1)[0] + "/" + name


def drop_database(name: str) -> None:
    """Drop a database made by ``create_database`` (closing its connections)."""
    _admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _admin(sql: str) -> None:
    conn = psycopg2.connect(PG_ADMIN_URL, connect_timeout=3)
    conn.autocommit = True
    try:
        with conn.cursor() as cur:
            cur.execute(sql)
    finally:
        conn.close()


def query(database_url: str, sql: str, *params: Any) -> list[tuple[Any, ...]]:
    """The rows of one read-only query."""
    conn = psycopg2.connect(database_url.replace("postgresql+psycopg2://", "postgresql://"))
    try:
        with conn.cursor() as cur:
            cur.execute(sql, params)
            return list(cur.fetchall())
    finally:
        conn.close()


@dataclass(frozen=True)
class BenchCompany:
    """A company registered in a benchmark's database, with what clients need to reach it."""

    id: int
    webhook_secret: str
    connect_token: str


def create_company(env: dict[str, str], salon_id: int) -> BenchCompany:
    """Register one company with the settings in ``env`` (a child process, as the service sees them)."""
    code = (
        "from web import create_app\nfrom models import Company, db\n"
        "from services.access import tokens, webhook_secrets\n"
        "app = create_app()\nwith app.app_context():\n"
        f"    c = Company(salon_id={salon_id}, title='bench'); db.session.add(c); db.session.commit()\n"
        "    print(c.id, webhook_secrets.webhook_secret(c), tokens.issue_connect_token(c.id, c.salon_id))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], env=env, cwd=ROOT, capture_output=True, text=True, check=True)
    company_id, secret, token = out.stdout.split()[-3:]
    return BenchCompany(int(company_id), secret, token)


def wait_http(url: str, proc: subprocess.Popen[Any], timeout: float = 60) -> None:
    """Wait until ``url`` answers; raise if ``proc`` exits or the time runs out."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"the server for {url} exited during start-up")
        try:
            with urllib.request.urlopen(url, timeout=1):
                return
        except OSError:
            time.sleep(0.2)
    raise RuntimeError(f"{url} did not answer within {timeout:.0f}s")


def stop(proc: subprocess.Popen[Any]) -> None:
    """Stop a server started in its own session: SIGTERM to its group, SIGKILL after 20 s."""
    if proc.poll() is None:
        os.killpg(proc.pid, 15)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, 9)


def process_stats(pid: int) -> tuple[float, int]:
    """RSS in MiB and thread count of the gunicorn worker whose master is ``pid``."""
    children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    worker = int(children[0]) if children else pid
    status = Path(f"/proc/{worker}/status").read_text()
    rss = int(next(line.split()[1] for line in status.splitlines() if line.startswith("VmRSS")))
    threads = int(next(line.split()[1] for line in status.splitlines() if line.startswith("Threads")))
    return rss / 1024, threads


def http_latency(url: str, samples: int = 60) -> tuple[list[float], int]:
    """Times (ms) of ``samples`` sequential GETs of ``url`` and how many failed (3 s timeout; 3 failures end it)."""
    times: list[float] = []
    failures = 0
    for _ in range(samples):
        started = time.perf_counter()
        try:
            with urllib.request.urlopen(url, timeout=3) as response:
                response.read()
            times.append((time.perf_counter() - started) * 1000)
        except OSError:
            failures += 1
            if failures >= 3:
                break
    return times, failures


def proc_stat(pid: int | str) -> list[str]:
    """The fields of /proc/<pid>/stat after the command name: state, parent pid, …"""
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()


def process_cpu_seconds(pid: int | str) -> float:
    """User + system CPU time so far of one process."""
    fields = proc_stat(pid)
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def parent_pids() -> dict[int, int]:
    """Every live process on this machine and its parent's pid."""
    parents: dict[int, int] = {}
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            parents[int(pid)] = int(proc_stat(pid)[1])
        except OSError:
            continue
    return parents


def tree_cpu_seconds(root: int) -> float:
    """User + system CPU time so far of ``root`` and every live process under it (a Celery worker's pool)."""
    parents = parent_pids()
    total, todo = 0.0, [root]
    while todo:
        pid = todo.pop()
        try:
            total += process_cpu_seconds(pid)
        except OSError:
            continue
        todo += [child for child, parent in parents.items() if parent == pid]
    return total


def cpu_seconds() -> dict[str, float]:
    """User + system CPU time so far of every process of each component on this machine."""
    totals = dict.fromkeys(COMPONENTS, 0.0)
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            command = Path(f"/proc/{pid}/cmdline").read_bytes()
            used = process_cpu_seconds(pid)
        except OSError:
            continue
        for name, marker in COMPONENTS.items():
            if marker in command:
                totals[name] += used
                break
    return totals


def percentile(values: list[float], q: float) -> float:
    """The ``q``-th percentile (nearest rank); NaN for no values."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q / 100 * (len(ordered) - 1))))] if ordered else float("nan")


def _section(heading: str) -> re.Pattern[str]:
    return re.compile(rf"^{re.escape(heading)}\n.*?(?=^## |\Z)", re.S | re.M)


def write_section(heading: str, section: str) -> None:
    """Replace (or append) one benchmark's section of docs/BENCHMARKS.md, leaving the others alone."""
    text = DOC.read_text() if DOC.exists() else "# Benchmarks\n"
    if _section(heading).search(text):
        text = _section(heading).sub(lambda _: section.rstrip() + "\n\n", text, count=1)
    else:
        text = text.rstrip() + "\n\n" + section
    DOC.write_text(text.rstrip() + "\n")


def publish(results: dict[str, Any], heading: str, section: str, write: bool) -> None:
    """Print a benchmark's results (as JSON, its settings left out) and its report; record the report when asked."""
    print(json.dumps({k: v for k, v in results.items() if k != "settings"}, indent=2, default=str))
    print(section)
    if write:
        write_section(heading, section)


def write_table(heading: str, table: str) -> None:
    """Replace the first Markdown table of one section of docs/BENCHMARKS.md (its prose stays)."""
    text = DOC.read_text()
    found = _section(heading).search(text)
    if found is None:
        raise SystemExit(f"docs/BENCHMARKS.md has no section {heading!r}")
    old = re.search(r"^\|.*?(?=^[^|]|\Z)", found.group(0), re.S | re.M)
    if old is None:
        raise SystemExit(f"the section {heading!r} has no table")
    body = found.group(0)
    updated = body[:old.start()] + table.rstrip() + "\n" + body[old.end():]
    DOC.write_text(text[:found.start()] + updated + text[found.end():])
