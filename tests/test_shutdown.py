"""Graceful shutdown: gunicorn drains requests and closes sockets with 1001; the worker finishes its task."""

from __future__ import annotations

import json
import os
import signal
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import redis
from flask import Flask
from simple_websocket import Client, ConnectionClosed
from sqlalchemy import select

from models import Callback, db
from tests.factories import make_company
from tests.socketio_client import Recorder
from tests.support import Backends, ServiceProcess, free_port, wait_until, web_command

GRACEFUL_TIMEOUT = 20  # gunicorn.conf.py


@pytest.fixture
def namespace(backends: Backends) -> Iterator[str]:
    """A Redis namespace no session worker listens on; its keys are dropped afterwards."""
    name = f"{backends.namespace}-stop{os.getpid()}"
    yield name
    with redis.Redis.from_url(backends.redis_url) as client:
        for key in client.scan_iter(f"{name}:*", count=1000):
            client.delete(key)


def _get(url: str, timeout: float = 10) -> tuple[int, dict[str, Any]]:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def test_sigterm_drains_requests_and_closes_websockets_with_1001(
    backends: Backends, service_env: dict[str, str], run_dir: Path, namespace: str
):
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    env = backends.env(**{**service_env, "REDIS_NAMESPACE": namespace, "PUBLIC_BASE_URL": base})
    web = ServiceProcess("web-shutdown", web_command(port, threads=8), env, run_dir / "web-shutdown.log").start()
    try:
        wait_until(lambda: _serving(web, base), timeout=30, interval=0.2)

        socket = Client.connect(f"ws://127.0.0.1:{port}/marketplace/ws")
        socket.send(json.dumps({"event": "getQR", "data": {"companyId": 1}}))
        assert json.loads(socket.receive(timeout=10))["event"] == "error"  # the handler is running

        # A request in flight: with no worker on this namespace the readiness check waits for its ping.
        answers: list[tuple[int, dict[str, Any]]] = []
        slow = threading.Thread(target=lambda: answers.append(_get(base + "/marketplace/health")))
        slow.start()
        with redis.Redis.from_url(backends.redis_url) as broker:
            wait_until(lambda: broker.llen(f"{namespace}:celery") > 0, timeout=10)

        stopping = time.monotonic()
        assert web.proc is not None
        os.kill(web.proc.pid, signal.SIGTERM)

        with pytest.raises(ConnectionClosed):
            while True:
                socket.receive(timeout=GRACEFUL_TIMEOUT)
        # 1001 comes from web.shutdown.close_all: the /ws handler registers its socket there.
        assert socket.close_reason == 1001, "the /ws handler must call web.shutdown.register(ws) / unregister(ws)"
        slow.join(timeout=GRACEFUL_TIMEOUT)
        assert answers and answers[0][0] == 503 and answers[0][1]["checks"]["worker"]["ok"] is False
        assert web.proc.wait(timeout=GRACEFUL_TIMEOUT) == 0
        # The open socket did not hold the drain until the graceful timeout.
        assert time.monotonic() - stopping < GRACEFUL_TIMEOUT / 2
    finally:
        web.stop()


def _serving(proc: ServiceProcess, base: str) -> bool:
    if not proc.running:
        raise AssertionError(f"gunicorn exited:\n{proc.output()[-3000:]}")
    try:
        return _get(base + "/marketplace/test", timeout=1)[0] == 200
    except OSError:
        return False


class _SlowYClients:
    """A partner API whose callback answer waits until the test releases it."""

    def __init__(self) -> None:
        self.received = threading.Event()
        self.release = threading.Event()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's naming
                self.rfile.read(int(self.headers.get("Content-Length") or 0))
                outer.received.set()
                outer.release.wait(timeout=60)
                body = json.dumps({"success": True, "data": None, "meta": {}}).encode()
                self.send_response(201)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.release.set()
        self.server.shutdown()
        self.server.server_close()


def test_a_sigtermed_worker_finishes_its_current_task(
    make_app: Callable[..., Flask], worker_factory: Callable[..., ServiceProcess], namespace: str
):
    yclients = _SlowYClients()
    settings = {"YCLIENTS_API_URL": yclients.url, "YCLIENTS_PARTNER_TOKEN": "partner-token-shutdown-0123456789",
                "YCLIENTS_APPLICATION_ID": "77", "REDIS_NAMESPACE": namespace}
    app = make_app(**{k.lower(): v for k, v in settings.items()})
    worker = worker_factory(wait=False, concurrency=1, **settings)
    try:
        with app.app_context():
            company = make_company(status="connected")
        app.extensions["celery"].send_task("yclients.send_callback", args=[company.id])
        if not yclients.received.wait(timeout=60):
            raise AssertionError(f"the callback never reached YClients:\n{worker.output()[-3000:]}")

        assert worker.proc is not None
        os.kill(worker.proc.pid, signal.SIGTERM)  # what docker stop / systemd send: the main process only
        wait_until(lambda: "warm shutdown" in worker.output().lower(), timeout=10)
        assert worker.running  # still waiting for the task in progress
        yclients.release.set()

        assert worker.proc.wait(timeout=30) == 0
        with app.app_context():
            row = db.session.scalar(select(Callback).where(Callback.company_id == company.id))
            assert row is not None and row.status == "sent" and row.http_status == 201
            db.session.remove()
    finally:
        worker.stop()
        yclients.close()


def test_sigterm_ends_socketio_sessions_at_once_so_clients_reconnect_elsewhere(
    backends: Backends, service_env: dict[str, str], run_dir: Path
):
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    env = backends.env(**{**service_env, "PUBLIC_BASE_URL": base})
    web = ServiceProcess("web-sio-stop", web_command(port, threads=8), env, run_dir / "web-sio-stop.log").start()
    try:
        wait_until(lambda: _serving(web, base), timeout=30, interval=0.2)
        by_websocket = Recorder(base)
        by_polling = Recorder(base, transports=("polling",))
        assert web.proc is not None
        stopping = time.monotonic()
        os.kill(web.proc.pid, signal.SIGTERM)
        # Without web.shutdown, gunicorn would wait GRACEFUL_TIMEOUT (20 s) for these sessions.
        assert by_websocket.disconnected.wait(10) and by_polling.disconnected.wait(10)
        assert web.proc.wait(timeout=20) == 0
        assert time.monotonic() - stopping < 15
    finally:
        web.stop()
