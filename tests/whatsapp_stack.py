"""An isolated service stack for WhatsApp tests: its own Redis namespace (so its own Celery queue),
a worker with short simulator timings, optionally gunicorn, and a fake YClients for the callback."""

from __future__ import annotations

import urllib.request
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import redis
import requests
from flask import Flask

from tests.fakes.yclients import APPLICATION_ID, PARTNER_TOKEN, FakeYClients, signed_user_data
from tests.support import (
    LOOPBACK,
    Backends,
    Host,
    ServiceProcess,
    beat_command,
    free_port,
    wait_until,
    web_command,
    worker_command,
)

SHORT_TIMINGS = {"SIMULATOR_QR_FIRST_TTL": "3", "SIMULATOR_QR_TTL": "2", "SIMULATOR_QR_COUNT": "3"}


@dataclass
class Stack:
    """The processes and settings of one isolated stack."""

    namespace: str
    env: dict[str, str]
    app: Flask
    yclients: FakeYClients
    redis_url: str
    processes: list[ServiceProcess] = field(default_factory=list)
    base_url: str | None = None

    def clean(self) -> None:
        """Forget this namespace's state (keeping Celery's own keys), as the shared isolation does."""
        keep = tuple(f"{self.namespace}:{p}".encode() for p in ("celery", "_kombu", "unacked", "health"))
        with redis.Redis.from_url(self.redis_url) as client:
            for key in client.scan_iter(f"{self.namespace}:*", count=1000):
                if not key.startswith(keep):
                    client.delete(key)
        self.yclients.reset()

    @contextmanager
    def at(self, moment: datetime) -> Iterator[Stack]:
        """This stack's app context with every process's test clock at ``moment`` (real time again after)."""
        from models import db
        from services.platform import clock

        with self.app.app_context():
            clock.set_test_time(moment)
            try:
                yield self
            finally:
                clock.set_test_time(None)
                db.session.remove()

    def restart_worker(self, kill: bool = False) -> None:
        """Stop (or SIGKILL) the stack's worker and start a new one with the same settings."""
        worker = self.processes[0]
        worker.kill() if kill else worker.stop()
        worker.start()

    def stop(self) -> None:
        for proc in self.processes:
            proc.stop()
        self.yclients.stop()
        self.app.extensions["bus"].close()
        self.app.extensions["redis"].close()
        self.app.extensions["celery"].close()
        with redis.Redis.from_url(self.redis_url) as client:
            for key in client.scan_iter(f"{self.namespace}:*", count=1000):
                client.delete(key)


def start_stack(make_app: Callable[..., Flask], backends: Backends, service_env: dict[str, str], run_dir: Path,
                web: bool = False, web_workers: int = 1, beat: bool = False, workers: Sequence[Host] = (LOOPBACK,),
                beat_host: Host = LOOPBACK, fakes_address: str = "127.0.0.1", web_threads: int = 32,
                **extra: str) -> Stack:
    """Start a worker on each of ``workers`` (and gunicorn when ``web``, with ``web_threads`` threads per process;
    beat on ``beat_host`` when ``beat``) on a fresh namespace with ``extra`` settings; the fake YClients listens
    on ``fakes_address``."""
    yclients = FakeYClients(fakes_address).start()
    namespace = f"{backends.namespace}w{uuid.uuid4().hex[:6]}"
    port = free_port()
    env = {
        **service_env, **SHORT_TIMINGS, "REDIS_NAMESPACE": namespace, "YCLIENTS_API_URL": yclients.url,
        "YCLIENTS_PARTNER_TOKEN": PARTNER_TOKEN, "YCLIENTS_APPLICATION_ID": str(APPLICATION_ID),
        "PUBLIC_BASE_URL": f"http://127.0.0.1:{port}", **extra,
    }
    app = make_app(**{k.lower(): v for k, v in env.items()})
    stack = Stack(namespace, env, app, yclients, backends.redis_url)
    try:
        _start_processes(stack, backends, run_dir, port, web, web_workers, web_threads, beat, workers, beat_host)
    except BaseException:
        stack.stop()
        raise
    return stack


def _start_processes(stack: Stack, backends: Backends, run_dir: Path, port: int, web: bool, web_workers: int,
                     web_threads: int, beat: bool, workers: Sequence[Host], beat_host: Host) -> None:
    app, env, namespace = stack.app, stack.env, stack.namespace
    for n, host in enumerate(workers):
        name = f"worker-{namespace}" + (f"-{n}" if n else "")
        stack.processes.append(ServiceProcess(name, host.command(worker_command(2)), backends.env(**env),
                                              run_dir / f"{name}.log").start())

    def workers_ready() -> bool:
        for worker in stack.processes:
            if not worker.running:
                raise RuntimeError(worker.output()[-3000:])
        if not all(" ready." in worker.output() for worker in stack.processes):
            return False
        try:
            return bool(app.extensions["celery"].send_task("health.ping", args=["ready"]).get(timeout=1))
        except Exception:
            return False

    wait_until(workers_ready, timeout=60, interval=0.2)
    if beat:
        stack.processes.append(ServiceProcess(f"beat-{namespace}", beat_host.command(beat_command(
            run_dir / f"beat-{namespace}")), backends.env(**env), run_dir / f"beat-{namespace}.log").start())
    if web:
        command = web_command(port, web_threads)
        command[command.index("--workers") + 1] = str(web_workers)
        proc = ServiceProcess(f"web-{namespace}", command, backends.env(**env),
                              run_dir / f"web-{namespace}.log").start()
        stack.processes.append(proc)
        stack.base_url = f"http://127.0.0.1:{port}"

        def up() -> bool:
            if not proc.running:
                raise RuntimeError(proc.output()[-3000:])
            try:
                with urllib.request.urlopen(stack.base_url + "/marketplace/test", timeout=1) as response:
                    return bool(response.status == 200)
            except OSError:
                return False

        wait_until(up, timeout=30, interval=0.2)


def collect(app: Flask, company_id: int) -> tuple[list[dict[str, Any]], Callable[[], None]]:
    """Subscribe to a company's events on ``app``'s bus: (received messages, unsubscribe)."""
    from services.platform.pubsub import company_channel

    received: list[dict[str, Any]] = []
    unsubscribe = app.extensions["bus"].subscribe(company_channel(company_id), received.append)
    return received, unsubscribe


def events_named(received: list[dict[str, Any]], name: str) -> list[dict[str, Any]]:
    """The ``data`` of every received event called ``name``."""
    return [m["data"] for m in list(received) if m.get("event") == name]


def register(stack: Stack, salon_id: int, user: dict[str, Any] | None = None,
             session: requests.Session | None = None) -> dict[str, Any]:
    """Register a salon on the stack's web: with the admin key, or as YClients does it, with ``user`` signed
    by the partner token (the fake must report the application installed); the 201 body (``company_id``,
    ``connect_url`` …)."""
    body: dict[str, Any] = {"salon_id": salon_id}
    headers = {"X-API-Key": stack.env["ADMIN_API_KEY"]}
    if user is not None:
        body["user_data"], body["user_data_sign"] = signed_user_data(user)
        headers = {}
    send = session.post if session is not None else requests.post
    response = send(f"{stack.base_url}/marketplace/register", json=body, headers=headers, timeout=10)
    assert response.status_code == 201, response.text
    return dict(response.json())
