"""Test infrastructure: real PostgreSQL/Redis when reachable (else SQLite/the embedded Redis),
and real service processes (Celery worker, gunicorn) started as subprocesses."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import redis

ROOT = Path(__file__).resolve().parent.parent
PG_ADMIN_URL = os.environ.get("TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")
REDIS_TEST_URL = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/0")


def free_port() -> int:
    """An unused TCP port on loopback."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def post(base: str, path: str, body: bytes, headers: dict[str, str] | None = None,
         chunked: bool = False) -> tuple[int, Any]:
    """POST ``body`` as JSON to a live server: (status, decoded JSON body or None)."""
    import http.client
    import json
    import urllib.parse

    url = urllib.parse.urlsplit(base)
    conn = http.client.HTTPConnection(url.hostname, url.port, timeout=20)
    try:
        payload: Any = iter([body[i:i + 65536] for i in range(0, len(body), 65536)]) if chunked else body
        conn.request("POST", path, body=payload, headers={"Content-Type": "application/json", **(headers or {})},
                     encode_chunked=chunked)
        response = conn.getresponse()
        raw = response.read()
        return response.status, json.loads(raw) if raw else None
    finally:
        conn.close()


def wait_until(predicate: Callable[[], Any], timeout: float = 10.0, interval: float = 0.05) -> Any:
    """Poll ``predicate`` until it returns something truthy; fail the test after ``timeout``."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = predicate()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"condition not met within {timeout}s (last value: {last!r})")


@dataclass
class Backends:
    """Where this test run's database and Redis live, and how they were chosen."""

    database_url: str
    redis_url: str
    namespace: str
    description: list[str] = field(default_factory=list)
    cleanup: list[Callable[[], None]] = field(default_factory=list)

    @property
    def is_postgres(self) -> bool:
        return self.database_url.startswith("postgresql")

    def env(self, **extra: str) -> dict[str, str]:
        """Environment for a service subprocess that shares this run's backends."""
        env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTEST_", "COV_"))}
        env.update(
            APP_ENV="test",
            DATABASE_URL=self.database_url,
            REDIS_URL=self.redis_url,
            REDIS_NAMESPACE=self.namespace,
            SECRET_KEY=TEST_SECRET,
            PYTHONUNBUFFERED="1",
        )
        env.update(extra)
        return env

    def close(self) -> None:
        for fn in reversed(self.cleanup):
            try:
                fn()
            except Exception as exc:  # cleanup must not hide the test results
                print(f"cleanup failed: {exc}", file=sys.stderr)


TEST_SECRET = "test-secret-key-0123456789-abcdefghijklmnop"


def fresh_postgres_database(run_id: str) -> tuple[str, Callable[[], None]] | None:
    """A new empty database ``ycwa_test_<run_id>`` on the local PostgreSQL: its URL and how to drop it
    (None when the server does not answer)."""
    import psycopg2

    try:
        conn = psycopg2.connect(PG_ADMIN_URL, connect_timeout=2)
    except psycopg2.OperationalError:
        return None
    conn.autocommit = True
    name = f"ycwa_test_{run_id}"
    with conn.cursor() as cur:
        cur.execute(f'CREATE DATABASE "{name}"')
    conn.close()
    base = PG_ADMIN_URL.rsplit("/", 1)[0]

    def drop() -> None:
        c = psycopg2.connect(PG_ADMIN_URL, connect_timeout=2)
        c.autocommit = True
        with c.cursor() as cur:
            cur.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        c.close()

    return f"{base}/{name}", drop


def _redis_reachable(url: str) -> bool:
    try:
        with redis.Redis.from_url(url, socket_connect_timeout=2) as client:
            return bool(client.ping())
    except redis.RedisError:
        return False


def detect_backends(tmp_dir: Path) -> Backends:
    """Use the real servers on loopback when they answer, the embedded fallbacks otherwise."""
    run_id = uuid.uuid4().hex[:10]
    force_fallback = os.environ.get("TEST_FORCE_FALLBACK") == "1"
    why = "not used (TEST_FORCE_FALLBACK=1)" if force_fallback else "unreachable"
    description: list[str] = []
    cleanup: list[Callable[[], None]] = []

    pg = None if force_fallback else fresh_postgres_database(run_id)
    if pg is not None:
        database_url, drop = pg
        cleanup.append(drop)
        description.append(f"database: PostgreSQL at 127.0.0.1:5432 (fresh database ycwa_test_{run_id})")
    else:
        database_url = f"sqlite:///{tmp_dir / 'test.db'}"
        description.append(f"database: PostgreSQL {why} -> falling back to SQLite {database_url}")

    if not force_fallback and _redis_reachable(REDIS_TEST_URL):
        redis_url = REDIS_TEST_URL
        description.append(f"redis: real Redis at {REDIS_TEST_URL} (namespace t{run_id})")
    else:
        from devstack.redis_server import EmbeddedRedis

        server = EmbeddedRedis().start()
        cleanup.append(server.stop)
        redis_url = server.url
        description.append(f"redis: Redis {why} -> falling back to the embedded Redis (Valkey) at {redis_url}")

    namespace = f"t{run_id}"

    def drop_keys() -> None:
        with redis.Redis.from_url(redis_url) as client:
            for key in client.scan_iter(f"{namespace}:*", count=1000):
                client.delete(key)

    cleanup.append(drop_keys)
    return Backends(database_url, redis_url, namespace, description, cleanup)


@dataclass(frozen=True)
class Host:
    """Where a service process runs: this machine's loopback, or a network namespace with an address of its own."""

    address: str = "127.0.0.1"
    netns: str | None = None

    def command(self, command: list[str]) -> list[str]:
        """``command`` as run on this host."""
        return ["ip", "netns", "exec", self.netns, *command] if self.netns else command


LOOPBACK = Host()


class ServiceProcess:
    """A service command (Celery worker, gunicorn) run as a child process with the test env."""

    def __init__(self, name: str, command: list[str], env: dict[str, str], log_path: Path) -> None:
        self.name = name
        self.command = command
        self.env = env
        self.log_path = log_path
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> ServiceProcess:
        log = open(self.log_path, "ab")  # noqa: SIM115 - owned by the child for its lifetime
        self.proc = subprocess.Popen(
            self.command, cwd=ROOT, env=self.env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
        log.close()
        return self

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def signal_group(self, signum: int) -> None:
        """Send ``signum`` to the process and all its children (prefork pool included)."""
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signum)

    def stop(self, timeout: float = 15.0) -> None:
        """SIGTERM, then SIGKILL after ``timeout``."""
        if self.proc is None or self.proc.poll() is not None:
            return
        self.signal_group(signal.SIGTERM)
        try:
            self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.signal_group(signal.SIGKILL)
            self.proc.wait(timeout=5)

    def kill(self) -> None:
        """SIGKILL the whole process group at once (a crash, not a shutdown)."""
        if self.proc is not None and self.proc.poll() is None:
            self.signal_group(signal.SIGKILL)
            self.proc.wait(timeout=5)

    def output(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""


def worker_command(concurrency: int = 2) -> list[str]:
    """A real ``celery worker`` for the test backends."""
    return [
        sys.executable, "-m", "celery", "-A", "wsgi:celery_app", "worker", "--loglevel", "INFO",
        "--pool", "prefork", "--concurrency", str(concurrency), "--without-mingle", "--without-gossip",
        "--hostname", f"test-{uuid.uuid4().hex[:6]}@%h",
    ]


def beat_command(schedule: Path) -> list[str]:
    """A real ``celery beat`` (the sweeps) keeping its schedule in ``schedule``."""
    return [sys.executable, "-m", "celery", "-A", "wsgi:celery_app", "beat", "--loglevel", "INFO",
            "--schedule", str(schedule)]


def web_command(port: int, threads: int = 32, address: str = "127.0.0.1") -> list[str]:
    """A real gunicorn serving the app on ``address:port``."""
    return [
        sys.executable, "-m", "gunicorn", "-c", str(ROOT / "gunicorn.conf.py"), "--bind", f"{address}:{port}",
        "--workers", "1", "--threads", str(threads), "wsgi:app",
    ]
