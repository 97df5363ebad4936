"""The compose topology at scale (tests/topology.py): the real nginx with the shipped deploy/nginx.conf in
front of two web and two realtime processes, two workers and beat, each on a host of its own (a network
namespace), on this run's PostgreSQL and Redis. Through the front door: a salon's whole connect flow with
live clients on every process, webhooks processed exactly once by one of the workers, Socket.IO clients
sticking to one realtime process, and the public rate limit exact whichever web process counts."""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from urllib.parse import parse_qs, urlsplit

import pytest
import requests
from sqlalchemy import select

from models import Booking, Callback, Company, EventStatus, IntegrationStatus, WebhookEvent, db
from services.whatsapp import gateway
from tests.factories import booking_delivery, make_company
from tests.netns import unavailable
from tests.support import wait_until
from tests.topology import NGINX, Client, Topology, running_topology, session_from
from tests.whatsapp_stack import register
from tests.ws_client import WsClient

pytestmark = pytest.mark.skipif(NGINX is None, reason="nginx is not installed (make test installs it as root)")


@pytest.fixture(scope="module")
def topology(make_app, backends, service_env, run_dir) -> Iterator[Topology]:
    why = unavailable()
    if why:
        pytest.skip(why)
    with running_topology(make_app, backends, service_env, run_dir) as topology:
        yield topology


def _sticky_clients(topology: Topology, token: str, n: int) -> list[Client]:
    """``n`` Socket.IO clients from addresses of their own, upgraded to WebSocket and authenticated."""
    clients: list[Client] = []
    try:
        for _ in range(n):
            clients.append(Client(topology.url, topology.client_address(), transports=("polling", "websocket"),
                                  headers={"x-auth-token": token}))
        for client in clients:
            client.wait_for("authenticated")
            wait_until(lambda client=client: client.transport == "websocket")
    except BaseException:
        for client in clients:
            client.close()
        raise
    return clients


def _plain_clients(topology: Topology, token: str, n: int) -> list[WsClient]:
    """``n`` plain WebSocket clients on /marketplace/ws through nginx, authenticated by their URL's token."""
    url = topology.url.replace("http://", "ws://") + f"/marketplace/ws?token={token}"
    clients: list[WsClient] = []
    try:
        for _ in range(n):
            clients.append(WsClient(url, source_address=(topology.client_address(), 0)))
        for client in clients:
            client.wait_for("authenticated")
    except BaseException:
        for client in clients:
            client.close()
        raise
    return clients


def test_the_connect_flow_through_nginx_reaches_clients_on_every_process_once(topology):
    stack, salon_id = topology.stack, 810001
    stack.yclients.install(salon_id)
    front = session_from(topology.client_address())
    sockets: list[Client] = []
    plain: list[WsClient] = []
    try:
        # YClients' install: a signed registration, then the salon's connect page.
        made = register(stack, salon_id, user={"id": 501, "name": "Анна", "salon_name": "Салон"}, session=front)
        page = front.get(topology.url + made["connect_url"], timeout=10)
        assert page.status_code == 200 and "text/html" in page.headers["Content-Type"]
        token = parse_qs(urlsplit(made["connect_url"]).query)["token"][0]

        sockets = _sticky_clients(topology, token, 8)
        plain = _plain_clients(topology, token, 6)
        # Every polling request of a Socket.IO client reached one realtime process (the upgrade did too:
        # another process refuses the session); clients spread over both. Plain sockets spread over both webs.
        homes = [set(client.upstreams) for client in sockets]
        assert all(len(home) == 1 for home in homes), homes
        assert {home.pop() for home in homes} == set(topology.realtime)
        assert {client.handshake_headers["X-Upstream"] for client in plain} == set(topology.web)

        # The QR over both protocols: the session task runs on one of the workers.
        sockets[0].emit("getQR", {})
        plain[0].send("getQR", {})
        assert sockets[0].wait_for("qr", timeout=20)["qr"].startswith("data:image/png;base64,")
        assert plain[0].wait_for("qr", timeout=20)["companyId"] == made["company_id"]
        with stack.app.app_context():
            gateway.simulate_scan(made["company_id"], "+79001234567")
            db.session.remove()
        # A last event after it: once every client has it, nothing more of the first can be on its way.
        for client in [*sockets, *plain]:
            client.wait_for("whatsapp.connected", timeout=20)
        stack.app.extensions["bus"].emit(made["company_id"], "probe", {"last": True})
        for client in [*sockets, *plain]:
            client.wait_for("probe")
            assert len(client.named("whatsapp.connected")) == 1 and len(client.named("probe")) == 1

        # The activation callback reached YClients once, and the salon is active.
        def active() -> bool:
            with stack.app.app_context():
                company = db.session.get(Company, made["company_id"])
                done = company is not None and company.integration_status == IntegrationStatus.ACTIVE
                db.session.remove()
                return done

        wait_until(active, timeout=30)
        assert len(stack.yclients.callbacks_for(salon_id)) == 1
        with stack.app.app_context():
            assert db.session.scalars(select(Callback.status).filter_by(company_id=made["company_id"])).all() == [
                "sent"]
            db.session.remove()
    finally:
        for client in [*sockets, *plain]:
            client.close()
        front.close()


_TASK_DONE = re.compile(r"Task (webhooks\.process(?:_batch)?)\[[^]]+\] succeeded in \S+: (.+)$", re.M)


def _processed_by(log: str) -> int:
    """How many inbox events a worker's log says it applied (one a ``process``, n a ``process_batch``)."""
    applied = 0
    for task, result in _TASK_DONE.findall(log):
        applied += 1 if task == "webhooks.process" else sum(int(n) for n in re.findall(r": (\d+)", result))
    return applied


def test_webhooks_through_nginx_are_processed_once_by_one_of_the_workers(topology):
    stack = topology.stack
    with stack.app.app_context():
        made = make_company()
        db.session.remove()
    before = [_processed_by(worker.output()) for worker in topology.workers]
    records = range(1, 41)
    sender = session_from(topology.client_address())
    try:
        with ThreadPoolExecutor(4) as pool:
            answers = list(pool.map(lambda record: sender.post(made.webhook_url, data=booking_delivery(record),
                                                               headers={"Content-Type": "application/json"},
                                                               timeout=20), records))
    finally:
        sender.close()
    assert {(a.status_code, a.text.replace(" ", "").strip()) for a in answers} == {(200, '{"success":true}')}
    assert {a.headers["X-Upstream"] for a in answers} == set(topology.web)

    def processed() -> list[WebhookEvent] | None:
        with stack.app.app_context():
            events = list(db.session.scalars(select(WebhookEvent).filter_by(company_id=made.id)))
            db.session.remove()
        return events if len(events) == len(records) and all(
            e.status == EventStatus.PROCESSED for e in events) else None

    events = wait_until(processed, timeout=30)
    assert {e.attempts for e in events} == {1}
    with stack.app.app_context():
        booked = db.session.scalars(select(Booking.record_id).filter_by(company_id=made.id)).all()
        db.session.remove()
    assert sorted(booked) == list(records)
    # Each event applied by exactly one run on one of the two workers, and both workers took a share.
    shares = [_processed_by(worker.output()) - seen for worker, seen in zip(topology.workers, before, strict=True)]
    assert sum(shares) == len(records) and all(shares), shares
    # Beat's sweep ticks reach the workers too.
    wait_until(lambda: any("Task webhooks.sweep[" in worker.output() for worker in topology.workers), timeout=15)


def test_the_public_limit_is_exact_whichever_web_process_counts(topology):
    source = topology.client_address()
    session = session_from(source)
    doors = [f"http://{address}" for address in topology.web] + [topology.url]
    served: Counter[str] = Counter()
    try:
        for n in range(60):
            door = doors[n % len(doors)]
            response = session.get(door + "/marketplace/test", timeout=10)
            assert response.status_code == 200, response.text
            assert response.headers["X-RateLimit-Remaining"] == str(59 - n)
            served[response.headers.get("X-Upstream") or door.removeprefix("http://")] += 1
        assert set(served) == set(topology.web) and sum(served.values()) == 60, served
        # The 61st is refused by either process, directly or through nginx.
        for door in doors:
            refused = session.get(door + "/marketplace/test", timeout=10)
            assert refused.status_code == 429
            body = refused.json()
            assert body["success"] is False and body["error"] == "Too many requests" and 1 <= body["retry_after"] <= 60
            assert int(refused.headers["Retry-After"]) in (body["retry_after"], body["retry_after"] - 1)
        # Another address still has its own budget.
        assert requests.get(topology.url + "/marketplace/test", timeout=10).status_code == 200
    finally:
        session.close()


def test_a_polling_request_sent_to_another_process_is_refused_and_harmless(topology):
    first, second = (f"http://{address}" for address in topology.realtime)
    session = session_from(topology.client_address())
    try:
        opened = session.get(first + "/socket.io/?EIO=4&transport=polling", timeout=5)
        sid = re.search(r'"sid":"([^"]+)"', opened.text)
        assert opened.status_code == 200 and sid
        query = f"/socket.io/?EIO=4&transport=polling&sid={sid.group(1)}"
        assert session.get(second + query, timeout=5).status_code == 400
        assert session.post(second + query, data="40/marketplace,", timeout=5).status_code == 400
        # The session lives on in its own process, and the other goes on serving.
        assert session.post(first + query, data="40/marketplace,", timeout=5).text == "OK"
        assert session.get(first + query, timeout=5).text.startswith("40/marketplace,{")
        assert session.get(second + "/marketplace/health/live", timeout=5).status_code == 200
    finally:
        session.close()
