"""The compose topology for Socket.IO: two ``realtime`` gunicorn processes behind a real nginx running
the shipped deploy/nginx.conf (Debian's nginx, on a free port with a folder of its own). Clients from
many addresses spread over both processes, every request of a client reaches the same one, and an
event a worker publishes reaches every client exactly once (one fan-out path: the bus)."""

from __future__ import annotations

import re
import shutil
import socket
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests
from requests.adapters import HTTPAdapter

from models import db
from services.whatsapp import gateway
from tests.factories import make_company
from tests.socketio_client import Recorder
from tests.support import ROOT, ServiceProcess, free_port, wait_until, web_command
from tests.whatsapp_stack import Stack, start_stack

NGINX = shutil.which("nginx") or ("/usr/sbin/nginx" if Path("/usr/sbin/nginx").exists() else None)
pytestmark = pytest.mark.skipif(NGINX is None, reason="nginx is not installed (make test installs it as root)")


def render_nginx_conf(port: int, web: str, realtime: list[str], folder: Path) -> str:
    """deploy/nginx.conf with this machine's addresses, its own temp folders and an X-Upstream header that
    says which process answered (the one line the test adds)."""
    conf = (ROOT / "deploy" / "nginx.conf").read_text()
    own = "".join(f"    {kind}_temp_path {folder / kind};\n" for kind in ("client_body", "proxy", "fastcgi", "uwsgi",
                                                                          "scgi"))
    replacements = {
        "server web:3000;": f"server {web};",
        "server realtime:3000;": "\n        ".join(f"server {address};" for address in realtime),
        "listen 80;": f"listen 127.0.0.1:{port};\n        add_header X-Upstream $upstream_addr always;",
        "http {\n": f"http {{\n    access_log {folder / 'access.log'};\n{own}",
    }
    for old, new in replacements.items():
        assert conf.count(old) == 1, f"deploy/nginx.conf no longer has {old!r}"
        conf = conf.replace(old, new)
    return conf


@dataclass
class Topology:
    stack: Stack
    url: str
    realtime: list[str]


def _answers(proc: ServiceProcess, url: str) -> bool:
    if not proc.running:
        raise RuntimeError(f"{proc.name} exited:\n{proc.output()[-3000:]}")
    try:
        return requests.get(url + "/marketplace/test", timeout=1).status_code == 200
    except requests.RequestException:
        return False


@pytest.fixture(scope="module")
def topology(make_app, backends, service_env, run_dir) -> Iterator[Topology]:
    stack = start_stack(make_app, backends, service_env, run_dir)  # a worker on a namespace of its own
    try:
        ports = [free_port(), free_port()]
        env = backends.env(**{**stack.env, "TRUSTED_PROXIES": "1"})
        for port in ports:
            proc = ServiceProcess(f"realtime-{port}", web_command(port), env, run_dir / f"realtime-{port}.log").start()
            stack.processes.append(proc)
            wait_until(lambda proc=proc, port=port: _answers(proc, f"http://127.0.0.1:{port}"), timeout=30)
        folder = run_dir / "nginx"
        for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"):
            (folder / kind).mkdir(parents=True, exist_ok=True)
        port = free_port()
        realtime = [f"127.0.0.1:{p}" for p in ports]
        conf = folder / "nginx.conf"
        conf.write_text(render_nginx_conf(port, realtime[0], realtime, folder))
        nginx = ServiceProcess("nginx", [str(NGINX), "-p", str(folder), "-c", str(conf), "-g",
                                         f"daemon off; pid {folder / 'nginx.pid'}; error_log {folder / 'error.log'};"],
                               env, run_dir / "nginx.log").start()
        stack.processes.append(nginx)
        url = f"http://127.0.0.1:{port}"
        wait_until(lambda: _answers(nginx, url), timeout=30)
        yield Topology(stack, url, realtime)
    finally:
        stack.stop()


class _FromAddress(HTTPAdapter):
    """Requests' adapter with connections from one local address (nginx hashes on it)."""

    def __init__(self, source: str) -> None:
        self._source = source
        super().__init__()

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        kwargs["source_address"] = (self._source, 0)
        super().init_poolmanager(*args, **kwargs)


class Client(Recorder):
    """A python-socketio client whose polling requests and WebSocket upgrade come from ``source``; it
    notes the upstream that answered each polling request."""

    def __init__(self, url: str, source: str, **connect: Any) -> None:
        self.upstreams: list[str] = []
        session = requests.Session()
        session.mount("http://", _FromAddress(source))
        session.hooks["response"].append(lambda response, *a, **k: self.upstreams.append(
            response.headers.get("X-Upstream", "")))
        host, port = url.removeprefix("http://").split(":")
        upgrade = socket.create_connection((host, int(port)), timeout=10, source_address=(source, 0))
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


def test_clients_stick_to_one_realtime_process_and_get_each_event_once(topology):
    app = topology.stack.app
    with app.app_context():
        company = make_company()
        db.session.remove()
    clients: list[Client] = []
    try:
        for n in range(16):
            clients.append(Client(topology.url, f"127.0.0.{n + 2}", transports=("polling", "websocket"),
                                  headers={"x-auth-token": company.token}))
        for client in clients:
            client.wait_for("authenticated")
            wait_until(lambda client=client: client.transport == "websocket")
        # Every polling request of a client reached one process (the upgrade did too: another process
        # refuses the session), and the clients spread over both processes.
        homes = [set(client.upstreams) for client in clients]
        assert all(len(home) == 1 for home in homes), homes
        assert {home.pop() for home in homes} == set(topology.realtime)

        # The worker publishes whatsapp.connected once; each process emits it to its local room.
        clients[0].emit("getQR", {})
        clients[0].wait_for("qr", timeout=20)
        with app.app_context():
            gateway.simulate_scan(company.id, "+79001234567")
            db.session.remove()
        for client in clients:
            client.wait_for("whatsapp.connected", timeout=20)
        # A last event after it: once every client has it, nothing more of the first can be on its way.
        app.extensions["bus"].emit(company.id, "probe", {"last": True})
        for client in clients:
            client.wait_for("probe")
            assert len(client.named("whatsapp.connected")) == 1
            assert [name for name, _ in client.events].count("probe") == 1
    finally:
        for client in clients:
            client.close()


def test_a_polling_request_sent_to_another_process_is_refused_and_harmless(topology):
    first, second = (f"http://{address}" for address in topology.realtime)
    opened = requests.get(first + "/socket.io/?EIO=4&transport=polling", timeout=5)
    sid = re.search(r'"sid":"([^"]+)"', opened.text)
    assert opened.status_code == 200 and sid
    query = f"/socket.io/?EIO=4&transport=polling&sid={sid.group(1)}"
    assert requests.get(second + query, timeout=5).status_code == 400
    assert requests.post(second + query, data="40/marketplace,", timeout=5).status_code == 400
    # The session lives on in its own process, and the other goes on serving.
    assert requests.post(first + query, data="40/marketplace,", timeout=5).text == "OK"
    assert requests.get(first + query, timeout=5).text.startswith("40/marketplace,{")
    assert requests.get(second + "/marketplace/health/live", timeout=5).status_code == 200
