"""``/marketplace/ws`` against gunicorn: events a worker publishes reach the right company's socket
only; authentication by message, header or query; the per-IP connection limit across processes."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
import requests

from models import db
from services.whatsapp import gateway
from tests.factories import make_company
from tests.socketio_client import Recorder, Refused
from tests.support import wait_until
from tests.whatsapp_stack import Stack, start_stack
from tests.ws_client import WsClient


def _ws_url(base: str, query: str = "") -> str:
    return base.replace("http://", "ws://") + "/marketplace/ws" + query


@pytest.fixture
def clients() -> Iterator[list[WsClient]]:
    opened: list[WsClient] = []
    yield opened
    for client in opened:
        client.close()


def _connect(clients: list[WsClient], base: str, query: str = "", **kw: Any) -> WsClient:
    client = WsClient(_ws_url(base, query), **kw)
    clients.append(client)
    return client


def test_a_worker_publishes_and_only_that_companys_socket_receives(live_server, ctx, clients):
    first, second = make_company(), make_company()
    alice = _connect(clients, live_server)
    bob = _connect(clients, live_server)
    alice.send("authenticate", {"token": first.token, "companyId": first.id})
    bob.send("authenticate", {"token": second.token, "companyId": second.id})
    assert alice.wait_for("authenticated") == {"companyId": first.id}
    assert bob.wait_for("authenticated") == {"companyId": second.id}
    snapshot = alice.wait_for("status")
    assert snapshot["companyId"] == first.id and snapshot["whatsapp_connected"] is False
    # The worker starts the session and publishes the QR it rendered.
    alice.send("getQR", {"companyId": first.id})
    qr = alice.wait_for("qr", timeout=15)
    assert qr["companyId"] == first.id and qr["qr"].startswith("data:image/png;base64,") and qr["expires_in"] > 0
    # The phone scans: the worker publishes whatsapp.connected.
    gateway.simulate_scan(first.id, "+79001234567")
    assert alice.wait_for("whatsapp.connected") == {"phone": "+79001234567", "companyId": first.id}
    db.session.remove()
    # Bob's socket saw none of it.
    assert [f["event"] for f in bob.frames] == ["authenticated", "status"]


def test_token_from_the_query_or_header_authenticates_at_once(live_server, ctx, clients):
    company = make_company()
    by_query = _connect(clients, live_server, f"?token={company.token}")
    assert by_query.wait_for("authenticated") == {"companyId": company.id}
    by_header = _connect(clients, live_server, headers={"x-auth-token": company.token})
    assert by_header.wait_for("status")["companyId"] == company.id
    # A header token also serves an ``authenticate`` message that carries no token.
    by_header.send("authenticate", {"companyId": company.id})
    wait_until(lambda: len(by_header.named("authenticated")) == 2)


def test_bad_tokens_foreign_companies_and_unauthenticated_requests_get_errors(live_server, ctx, clients):
    mine, other = make_company(), make_company()
    client = _connect(clients, live_server)
    client.send("getQR", {"companyId": mine.id})
    assert client.wait_for("error") == {"message": "Требуется аутентификация"}
    client.send("authenticate", {"token": "forged", "companyId": mine.id})
    wait_until(lambda: {"message": "Недействительный токен"} in client.named("error"))
    client.send("authenticate", {"token": mine.token, "companyId": other.id})
    wait_until(lambda: len(client.named("error")) == 3)
    assert not client.named("authenticated")
    client.send("authenticate", {"token": mine.token, "companyId": mine.id})
    client.wait_for("authenticated")
    client.send("getQR", {"companyId": other.id})
    wait_until(lambda: {"message": "Нет доступа к этой компании"} in client.named("error"))
    client.send("getPairingCode", {"phone": "12"})
    wait_until(lambda: any("телефона" in e["message"] for e in client.named("error")))
    client.send_raw("not json")
    wait_until(lambda: {"message": "Некорректное сообщение"} in client.named("error"))


def test_a_deeply_nested_frame_is_an_error_frame_and_the_socket_stays_open(live_server, ctx, clients):
    company = make_company()
    client = _connect(clients, live_server)
    client.send_raw("[" * 60_000)
    client.wait_for("error")
    assert client.named("error") == [{"message": "Некорректное сообщение"}]
    client.send("authenticate", {"token": company.token, "companyId": company.id})
    assert client.wait_for("authenticated") == {"companyId": company.id}


def test_a_frame_over_64_kib_closes_the_socket_with_1009_before_it_is_read(live_server, ctx, clients):
    company = make_company()
    client = _connect(clients, live_server)
    client.send_raw(json.dumps({"event": "authenticate", "data": {"token": "x" * 200_000}}))
    assert client.closed.wait(10)
    assert client.close_code == 1009
    assert not client.frames  # refused while it arrived: never parsed, never answered
    after = _connect(clients, live_server)
    after.send("authenticate", {"token": company.token, "companyId": company.id})
    assert after.wait_for("authenticated") == {"companyId": company.id}


@pytest.fixture(scope="module")
def limited(make_app, backends, service_env, run_dir) -> Iterator[Stack]:
    # Two gunicorn worker processes: the limit is counted in Redis, so it holds across them.
    stack = start_stack(make_app, backends, service_env, run_dir, web=True, web_workers=2,
                        RATELIMIT_ENABLED="true")
    yield stack
    stack.stop()


def test_five_connections_per_minute_per_ip(limited, clients):
    assert limited.base_url
    for _ in range(5):
        client = _connect(clients, limited.base_url)
        client.send("authenticate", {"token": "x"})
        client.wait_for("error")
        assert not client.closed.is_set()
    refused = _connect(clients, limited.base_url)
    error = refused.wait_for("error")
    assert error["message"] == "Too many requests" and 0 < error["retry_after"] <= 60
    assert refused.closed.wait(5)


@pytest.fixture(scope="module")
def capped(make_app, backends, service_env, run_dir) -> Iterator[Stack]:
    stack = start_stack(make_app, backends, service_env, run_dir, web=True, WEBSOCKET_MAX_PER_PROCESS="2")
    yield stack
    stack.stop()


def test_a_process_refuses_sockets_beyond_its_cap_and_http_keeps_answering(capped, clients):
    assert capped.base_url
    held = [_connect(clients, capped.base_url) for _ in range(2)]
    for client in held:
        client.send("authenticate", {"token": "x"})
        client.wait_for("error")
    refused = _connect(clients, capped.base_url)
    assert refused.wait_for("error") == {"message": "Сервер перегружен, попробуйте позже"}
    assert refused.closed.wait(5)
    assert requests.get(capped.base_url + "/marketplace/health/live", timeout=5).status_code == 200
    held[0].close()

    def accepted() -> bool:
        client = _connect(clients, capped.base_url)
        client.send("authenticate", {"token": "x"})
        return client.wait_for("error")["message"] == "Недействительный токен"

    wait_until(accepted, timeout=10, interval=0.2)


def _socketio_or_none(base: str) -> Recorder | None:
    try:
        return Recorder(base)
    except Refused:
        return None


def test_socketio_sessions_take_slots_of_the_same_cap(capped, clients):
    assert capped.base_url
    # The previous test's sockets may still be closing: wait for a free slot.
    held = wait_until(lambda: _socketio_or_none(capped.base_url), timeout=10, interval=0.2)
    try:
        plain = _connect(clients, capped.base_url)
        plain.send("authenticate", {"token": "x"})
        plain.wait_for("error")
        assert _socketio_or_none(capped.base_url) is None  # refused at the Engine.IO handshake: nothing kept
        assert requests.get(capped.base_url + "/marketplace/health/live", timeout=5).status_code == 200
    finally:
        held.close()
    wait_until(lambda: (again := _socketio_or_none(capped.base_url)) and again.close() is None, timeout=10,
               interval=0.2)
