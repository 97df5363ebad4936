"""The compose topology on one machine, each service on a host of its own (tests/netns.py): the real nginx
running the shipped deploy/nginx.conf in front of two ``web`` and two ``realtime`` gunicorn processes, two
Celery workers and beat, on this run's PostgreSQL and Redis (reached through relays on the bridge) and a
fake YClients on this machine's bridge address. Rate limits are on, as in production; every client comes
from an address of its own (``Topology.client_address``), so each test counts on its own budgets."""

from __future__ import annotations

import shutil
import socket
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from itertools import count
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import requests
from flask import Flask
from requests.adapters import HTTPAdapter

from tests.netns import Network
from tests.socketio_client import Recorder
from tests.support import ROOT, Backends, Host, ServiceProcess, wait_until, web_command
from tests.whatsapp_stack import Stack, start_stack

NGINX = shutil.which("nginx") or ("/usr/sbin/nginx" if Path("/usr/sbin/nginx").exists() else None)
PORT = 3000  # every host is a machine of its own: each serves on the port compose gives it
NGINX_TEMP = ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")


def render_nginx_conf(web: list[str], realtime: list[str], folder: Path) -> str:
    """deploy/nginx.conf with the hosts' addresses, its own temp folders and an X-Upstream header that says
    which process answered (the one line the test adds)."""
    conf = (ROOT / "deploy" / "nginx.conf").read_text()
    own = "".join(f"    {kind}_temp_path {folder / kind};\n" for kind in NGINX_TEMP)
    replacements = {
        "server web:3000;": "\n        ".join(f"server {address};" for address in web),
        "server realtime:3000;": "\n        ".join(f"server {address};" for address in realtime),
        "listen 80;": "listen 80;\n        add_header X-Upstream $upstream_addr always;",
        "http {\n": f"http {{\n    access_log {folder / 'access.log'};\n{own}",
    }
    for old, new in replacements.items():
        assert conf.count(old) == 1, f"deploy/nginx.conf no longer has {old!r}"
        conf = conf.replace(old, new)
    return conf


class FromAddress(HTTPAdapter):
    """Requests' adapter with connections from one local address (nginx and the rate limits key on it)."""

    def __init__(self, source: str) -> None:
        self._source = source
        super().__init__()

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        kwargs["source_address"] = (self._source, 0)
        super().init_poolmanager(*args, **kwargs)


def session_from(source: str) -> requests.Session:
    """A requests session whose connections come from ``source``."""
    session = requests.Session()
    session.mount("http://", FromAddress(source))
    return session


class Client(Recorder):
    """A python-socketio client whose polling requests and WebSocket upgrade come from ``source``; it
    notes the upstream that answered each polling request."""

    def __init__(self, url: str, source: str, **connect: Any) -> None:
        self.upstreams: list[str] = []
        session = session_from(source)
        session.hooks["response"].append(lambda response, *a, **k: self.upstreams.append(
            response.headers.get("X-Upstream", "")))
        parts = urlsplit(url)
        upgrade = socket.create_connection((parts.hostname, parts.port or 80), timeout=10,
                                           source_address=(source, 0))
        self.upgrade_socket = upgrade
        try:
            super().__init__(url, client_options={"http_session": session,
                                                  "websocket_extra_options": {"socket": upgrade}}, **connect)
        except BaseException:
            upgrade.close()
            raise

    def close(self) -> None:
        super().close()
        self.upgrade_socket.close()


@dataclass
class Topology:
    stack: Stack
    network: Network
    url: str  # nginx, the one front door
    web: list[str]
    realtime: list[str]
    workers: list[ServiceProcess]
    _numbers: Iterator[int] = field(default_factory=lambda: count(100))

    def client_address(self) -> str:
        """A fresh address of this machine for a client (its own rate limit budgets, its own nginx hash)."""
        return self.network.client_address(next(self._numbers))


def _answers(proc: ServiceProcess, url: str) -> bool:
    if not proc.running:
        raise RuntimeError(f"{proc.name} exited:\n{proc.output()[-3000:]}")
    try:
        return requests.get(url + "/marketplace/health/live", timeout=1).status_code == 200
    except requests.RequestException:
        return False


def _serve(name: str, host: Host, env: dict[str, str], run_dir: Path) -> ServiceProcess:
    return ServiceProcess(name, host.command(web_command(PORT, address=host.address)), env,
                          run_dir / f"{name}-{host.address}.log").start()


@contextmanager
def running_topology(make_app: Callable[..., Flask], backends: Backends, service_env: dict[str, str],
                     run_dir: Path) -> Iterator[Topology]:
    """Start the whole topology; stop every process and remove every namespace afterwards, failed or not."""
    assert NGINX is not None
    network = Network(run_dir)
    stack: Stack | None = None
    try:
        proxy, *web_hosts = (network.host(name, n) for name, n in (("proxy", 2), ("web-a", 11), ("web-b", 12)))
        realtime_hosts = [network.host("realtime-a", 21), network.host("realtime-b", 22)]
        worker_hosts = [network.host("worker-a", 31), network.host("worker-b", 32)]
        url = f"http://{proxy.address}"
        stack = start_stack(
            make_app, backends, service_env, run_dir, beat=True, workers=worker_hosts,
            beat_host=network.host("beat", 40), fakes_address=network.address,
            DATABASE_URL=network.reachable(backends.database_url), REDIS_URL=network.reachable(backends.redis_url),
            TRUSTED_PROXIES="1", RATELIMIT_ENABLED="true", PUBLIC_BASE_URL=url)
        workers = list(stack.processes[:len(worker_hosts)])
        env = backends.env(**stack.env)
        served = [(_serve(f"web-{n}", host, env, run_dir), host) for n, host in enumerate(web_hosts)]
        served += [(_serve(f"realtime-{n}", host, env, run_dir), host) for n, host in enumerate(realtime_hosts)]
        for proc, host in served:
            stack.processes.append(proc)
            wait_until(lambda proc=proc, host=host: _answers(proc, f"http://{host.address}:{PORT}"), timeout=30)

        folder = run_dir / f"nginx-{network.tag}"
        for kind in NGINX_TEMP:
            (folder / kind).mkdir(parents=True, exist_ok=True)
        conf = folder / "nginx.conf"
        web = [f"{host.address}:{PORT}" for host in web_hosts]
        realtime = [f"{host.address}:{PORT}" for host in realtime_hosts]
        conf.write_text(render_nginx_conf(web, realtime, folder))
        nginx = ServiceProcess("nginx", proxy.command([
            str(NGINX), "-p", str(folder), "-c", str(conf), "-g",
            f"daemon off; pid {folder / 'nginx.pid'}; error_log {folder / 'error.log'};"]), env,
            folder / "nginx.log").start()
        stack.processes.append(nginx)
        wait_until(lambda: _answers(nginx, url), timeout=30)
        stack.base_url = url
        yield Topology(stack, network, url, web, realtime, workers)
    finally:
        if stack is not None:
            stack.stop()
        network.close()
