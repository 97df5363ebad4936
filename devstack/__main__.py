"""``make run``: migrate, then start web, worker, beat and Flower; Ctrl-C stops them all.

With no ``REDIS_URL`` in the environment an embedded Redis server (devstack/redis_server.py) is
started first and stopped last, and every process talks to it over ``redis://``; with no
``DATABASE_URL`` a SQLite file under ``var/`` is used. Secrets that development needs are
generated once and kept under ``var/``.
"""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from devstack.redis_server import EmbeddedRedis
from services.platform.settings import load_settings

ROOT = Path(__file__).resolve().parent.parent
VAR = ROOT / "var"


def _persistent_secret(name: str, make: str) -> str:
    path = VAR / name
    if not path.exists():
        path.write_text(make)
        path.chmod(0o600)
    return path.read_text().strip()


def _environment(redis_url: str | None) -> dict[str, str]:
    env = dict(os.environ)
    env.setdefault("DATABASE_URL", f"sqlite:///{VAR / 'app.db'}")
    if redis_url:
        env["REDIS_URL"] = redis_url
    env.setdefault("SECRET_KEY", _persistent_secret("secret_key", secrets.token_urlsafe(48)))
    env.setdefault("ADMIN_API_KEY", _persistent_secret("admin_api_key", "sk_" + secrets.token_urlsafe(32)))
    env.setdefault("FLOWER_BASIC_AUTH", _persistent_secret("flower_basic_auth", "admin:" + secrets.token_urlsafe(12)))
    env.setdefault("PUBLIC_BASE_URL", f"http://localhost:{env.get('PORT', '3000')}")
    env.setdefault("FLOWER_PORT", "5555")
    # One web process serves everything, Socket.IO included: an Engine.IO polling session lives in the
    # process that opened it, and one process needs no sticky proxy. Its threads make up for the second.
    env.setdefault("WEB_CONCURRENCY", "1")
    env.setdefault("GUNICORN_THREADS", "1024")
    # One metrics folder for web, worker and beat, emptied at every start (old pids' files are stale).
    metrics_dir = VAR / f"metrics-{env.get('PORT', '3000')}"
    shutil.rmtree(metrics_dir, ignore_errors=True)
    metrics_dir.mkdir(parents=True)
    env["PROMETHEUS_MULTIPROC_DIR"] = str(metrics_dir)
    env["PYTHONUNBUFFERED"] = "1"
    shared = ("DATABASE_URL", "REDIS_URL", "SECRET_KEY", "ADMIN_API_KEY")
    devstack_env = VAR / "devstack.env"
    devstack_env.write_text("".join(f"{name}={env[name]}\n" for name in shared if env.get(name)))
    devstack_env.chmod(0o600)
    return env


def _commands(env: dict[str, str]) -> dict[str, list[str]]:
    bin_dir = Path(sys.executable).parent
    settings = load_settings(**{k.lower(): v for k, v in env.items() if k in ("REDIS_URL", "DATABASE_URL")})
    return {
        "web": [str(bin_dir / "gunicorn"), "-c", str(ROOT / "gunicorn.conf.py"), "wsgi:app"],
        # One worker: nobody to gossip or mingle with (gossip would also read every worker event).
        "worker": [
            str(bin_dir / "celery"), "-A", "wsgi:celery_app", "worker", "--loglevel", "INFO",
            "--concurrency", str(settings.celery_worker_concurrency), "--hostname", "worker@%h",
            "--without-gossip", "--without-mingle",
        ],
        "beat": [
            str(bin_dir / "celery"), "-A", "wsgi:celery_app", "beat", "--loglevel", "INFO",
            "--schedule", str(VAR / f"celerybeat-schedule-{env.get('PORT', '3000')}"),
        ],
        "flower": [
            # The password reaches Flower as FLOWER_BASIC_AUTH in its environment (flowerconfig.py), never argv.
            str(bin_dir / "celery"), "-A", "wsgi:celery_app", "flower", f"--port={env['FLOWER_PORT']}",
            "--address=127.0.0.1",
        ],
    }


def _wait_for(url: str, processes: dict[str, subprocess.Popen[bytes]], timeout: float = 60) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for name, proc in processes.items():
            if proc.poll() is not None:
                print(f"{name} exited with {proc.returncode} during start-up", file=sys.stderr)
                return False
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return True
        except OSError:
            pass
        time.sleep(0.3)
    return False


def _stop(processes: dict[str, subprocess.Popen[bytes]]) -> None:
    for proc in processes.values():
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + 20
    for proc in processes.values():
        try:
            proc.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            proc.kill()


def main() -> int:
    """Start the whole embedded stack and supervise it until Ctrl-C."""
    VAR.mkdir(exist_ok=True)
    if os.environ.get("REDIS_URL"):
        return _run(None)
    port = int(os.environ.get("EMBEDDED_REDIS_PORT", "6390"))
    # The server's folder under var/ keeps its log (redis.log) for a look after the fact.
    embedded = EmbeddedRedis(port=port, data_dir=VAR / f"redis-{port}").start()
    try:
        return _run(embedded)
    finally:
        # Last: the worker's warm shutdown still acknowledges tasks through it.
        embedded.stop()


def _run(embedded: EmbeddedRedis | None) -> int:
    """Migrate, start every process and supervise them until Ctrl-C or until one exits."""
    env = _environment(embedded.url if embedded else None)
    os.environ.update(env)
    settings = load_settings()

    from services.platform.schema import upgrade

    upgrade(settings.database_url)
    commands = _commands(env)
    processes: dict[str, subprocess.Popen[bytes]] = {}
    stopping = False

    def _on_signal(signum: int, _frame: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGINT, _on_signal)
    signal.signal(signal.SIGTERM, _on_signal)
    try:
        for name, command in commands.items():
            # Own process group: a terminal Ctrl-C reaches the launcher, which stops children in order.
            processes[name] = subprocess.Popen(command, cwd=ROOT, env=env, start_new_session=True)
        port = env.get("PORT", "3000")
        base = f"http://localhost:{port}/marketplace"
        if not _wait_for(f"http://127.0.0.1:{port}/marketplace/test", processes):
            print("the service did not start; see the output above", file=sys.stderr)
            return 1
        user = env["FLOWER_BASIC_AUTH"].split(":", 1)[0]
        print(
            "\n"
            f"  Service ready      {base}/\n"
            f"  API self-test      {base}/test\n"
            f"  Health             {base}/health  (liveness: {base}/health/live)\n"
            f"  Metrics            {base}/metrics  (X-API-Key: the admin key)\n"
            f"  Flower             http://127.0.0.1:{env['FLOWER_PORT']}/"
            f"  (user {user!r}, password in var/flower_basic_auth)\n"
            f"  Admin API key      in var/admin_api_key\n"
            f"  Database           {settings.database_url}\n"
            f"  Redis              {settings.redis_url}{' (embedded)' if embedded else ''}\n"
            "  Ctrl-C stops everything.\n",
            flush=True,
        )
        while not stopping:
            for name, proc in processes.items():
                if proc.poll() is not None:
                    print(f"{name} exited with {proc.returncode}; stopping the stack", file=sys.stderr)
                    return 1
            time.sleep(0.5)
        return 0
    finally:
        print("stopping…", file=sys.stderr, flush=True)
        _stop(processes)


if __name__ == "__main__":
    sys.exit(main())
