"""Socket.IO at ``/socket.io/``, namespace ``/marketplace``, driven by python-socketio's client over
WebSocket only against gunicorn: the reference's events, tokens from the handshake, refusals, and the
rules the namespace shares with ``/marketplace/ws``."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
import requests
import socketio
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

from models import db
from services.whatsapp import gateway
from tests.factories import make_company
from tests.socketio_client import NAMESPACE, Recorder, Refused
from tests.support import wait_until
from tests.whatsapp_stack import Stack, start_stack
from tests.ws_client import WsClient


@pytest.fixture
def recorders() -> Iterator[list[Recorder]]:
    opened: list[Recorder] = []
    yield opened
    for recorder in opened:
        recorder.close()


def _open(opened: list[Recorder], base: str, **kw: object) -> Recorder:
    recorder = Recorder(base, **kw)  # type: ignore[arg-type]
    opened.append(recorder)
    return recorder


def test_authenticate_get_a_qr_and_see_the_scan_over_websocket(live_server, ctx, recorders):
    mine, other = make_company(), make_company()
    alice = _open(recorders, live_server)
    bob = _open(recorders, live_server)
    assert alice.transport == "websocket"
    alice.emit("authenticate", {"token": mine.token, "companyId": mine.id})
    bob.emit("authenticate", {"token": other.token, "companyId": other.id})
    assert alice.wait_for("authenticated") == {"companyId": mine.id}
    snapshot = alice.wait_for("status")
    assert snapshot["companyId"] == mine.id and snapshot["whatsapp_connected"] is False
    assert bob.wait_for("authenticated") == {"companyId": other.id}
    # The worker starts the session and publishes the QR it rendered, through the bus to the room.
    alice.emit("getQR", {"companyId": mine.id})
    qr = alice.wait_for("qr", timeout=15)
    assert qr["companyId"] == mine.id and qr["qr"].startswith("data:image/png;base64,") and qr["expires_in"] > 0
    gateway.simulate_scan(mine.id, "+79001234567")
    assert alice.wait_for("whatsapp.connected") == {"phone": "+79001234567", "companyId": mine.id}
    db.session.remove()
    assert [name for name, _ in bob.events] == ["authenticated", "status"]
    # Once linked, getQR answers that WhatsApp is connected.
    alice.emit("getQR", {})
    wait_until(lambda: len(alice.named("whatsapp.connected")) >= 2)


def test_a_token_in_the_header_or_the_auth_payload_authenticates_at_connect(live_server, ctx, recorders):
    company = make_company()
    by_header = _open(recorders, live_server, headers={"x-auth-token": company.token})
    assert by_header.wait_for("authenticated") == {"companyId": company.id}
    assert by_header.wait_for("status")["companyId"] == company.id
    by_auth = _open(recorders, live_server, auth={"token": company.token, "companyId": company.id})
    assert by_auth.wait_for("authenticated") == {"companyId": company.id}
    # The header token also serves an ``authenticate`` that carries none.
    by_header.emit("authenticate", {"companyId": company.id})
    wait_until(lambda: len(by_header.named("authenticated")) == 2)


def test_the_readme_client_answers_authenticated_at_once_and_sees_the_scan(live_server, ctx):
    # authenticated comes after the namespace's CONNECT, so a handler that emits at once may (README example).
    company = make_company()
    sio = socketio.Client(reconnection=False)
    seen: list[str] = []

    @sio.on("authenticated", namespace=NAMESPACE)
    def authenticated(data: dict[str, int]) -> None:
        sio.emit("getQR", {"companyId": data["companyId"]}, namespace=NAMESPACE)

    sio.on("qr", lambda data: seen.append("qr"), namespace=NAMESPACE)
    sio.on("whatsapp.connected", lambda data: seen.append(data["phone"]), namespace=NAMESPACE)
    sio.connect(live_server, namespaces=[NAMESPACE], auth={"token": company.token}, wait_timeout=10)
    try:
        wait_until(lambda: "qr" in seen, timeout=15)
        gateway.simulate_scan(company.id, "+79001234567")
        db.session.remove()
        wait_until(lambda: "+79001234567" in seen)
    finally:
        sio.disconnect()


def test_bad_tokens_and_other_companies_are_refused(live_server, ctx, recorders):
    mine, other = make_company(), make_company()
    with pytest.raises(Refused) as refused:
        _open(recorders, live_server, headers={"x-auth-token": "forged"})
    assert refused.value.data == {"message": "Недействительный токен"}
    with pytest.raises(Refused) as refused:
        _open(recorders, live_server, auth={"token": mine.token, "companyId": other.id})
    assert refused.value.data == {"message": "Недействительный токен"}
    client = _open(recorders, live_server)
    client.emit("getQR", {"companyId": mine.id})
    assert client.wait_for("error") == {"message": "Требуется аутентификация"}
    client.emit("authenticate", {"token": mine.token, "companyId": other.id})
    wait_until(lambda: {"message": "Недействительный токен"} in client.named("error"))
    client.emit("authenticate", {"token": ["not", "a", "string"]})
    wait_until(lambda: len(client.named("error")) == 3)
    assert not client.named("authenticated")
    client.emit("authenticate", {"token": mine.token, "companyId": mine.id})
    client.wait_for("authenticated")
    client.emit("getQR", {"companyId": other.id})
    wait_until(lambda: {"message": "Нет доступа к этой компании"} in client.named("error"))
    client.emit("getPairingCode", {"phone": "12"})
    wait_until(lambda: any("телефона" in e["message"] for e in client.named("error")))
    client.emit("getQR", "not an object")
    wait_until(lambda: {"message": "Некорректное сообщение"} in client.named("error"))
    client.emit("subscribeAll", {})
    wait_until(lambda: {"message": "Неизвестное событие: subscribeAll"} in client.named("error"))


def test_the_default_namespace_and_foreign_origins_are_refused(live_server):
    plain = socketio.Client(reconnection=False)
    try:
        with pytest.raises(socketio.exceptions.ConnectionError):
            plain.connect(live_server, namespaces=["/"], transports=["websocket"], wait_timeout=5)
    finally:
        plain.disconnect()
    handshake = live_server + "/socket.io/?EIO=4&transport=polling"
    assert requests.get(handshake, headers={"Origin": "https://evil.example"}, timeout=5).status_code == 400
    own = requests.get(handshake, headers={"Origin": live_server}, timeout=5)
    assert own.status_code == 200 and own.text.startswith("0{")


class RawSession:
    """Engine.IO and Socket.IO spoken by hand over one WebSocket, to send what no client library would."""

    def __init__(self, base: str, auth: dict[str, object] | None = None) -> None:
        self.ws = connect(base.replace("http://", "ws://") + "/socket.io/?EIO=4&transport=websocket", open_timeout=10,
                          legacy=True)
        assert str(self.ws.recv(timeout=10)).startswith("0{")  # Engine.IO OPEN
        self.ws.send("40/marketplace," + (json.dumps(auth) if auth else ""))
        assert str(self.ws.recv(timeout=10)).startswith("40/marketplace,{")  # Socket.IO CONNECT

    def events_until(self, name: str) -> list[str]:
        """The names of the events received up to and including ``name``."""
        seen: list[str] = []
        while not seen or seen[-1] != name:
            frame = str(self.ws.recv(timeout=10))
            if frame.startswith("42/marketplace,"):
                seen.append(json.loads(frame.removeprefix("42/marketplace,"))[0])
            elif frame.startswith("44/marketplace,"):
                seen.append("connect_error")
        return seen

    def closed_by_server(self, timeout: float = 10) -> int | None:
        """Read until the server closes; the close code."""
        with pytest.raises(ConnectionClosed):
            while True:
                self.ws.recv(timeout=timeout)
        return self.ws.close_code


def test_a_packet_over_64_kib_closes_the_session_with_1009_before_it_is_read(live_server):
    session = RawSession(live_server)
    session.ws.send('42/marketplace,["authenticate",{"token":"' + "x" * 200_000 + '"}]')
    assert session.closed_by_server() == 1009
    # Polling bodies have the same cap (Engine.IO answers 400 and ends the session).
    opened = requests.get(live_server + "/socket.io/?EIO=4&transport=polling", timeout=5).text
    sid = opened.split('"sid":"', 1)[1].split('"', 1)[0]
    body = '42/marketplace,["authenticate",{"token":"' + "x" * 70_000 + '"}]'
    posted = requests.post(f"{live_server}/socket.io/?EIO=4&transport=polling&sid={sid}", data=body, timeout=5)
    assert posted.status_code == 400


def test_a_second_connect_gets_no_second_welcome(live_server, ctx):
    company = make_company()
    session = RawSession(live_server, auth={"token": company.token})
    assert session.events_until("status") == ["authenticated", "status"]
    session.ws.send("40/marketplace," + json.dumps({"token": company.token}))  # refused: already connected
    session.ws.send('42/marketplace,["subscribeAll",{}]')
    assert session.events_until("error") == ["connect_error", "error"]
    session.ws.close()


@pytest.mark.parametrize("frame", [
    "42/marketplace," + "[" * 60_000,  # nested past every parser's depth
    '42/marketplace,["authenticate",{"token": NaN}]',
    '451-/marketplace,["authenticate",{"_placeholder":true,"num":0}]',  # binary attachments would be kept
    "43/marketplace,1[]",  # an ACK the server never asked for
    "42/marketplace,[oops",
    "x-not-engine-io",
], ids=["deep", "nan", "binary", "ack", "broken", "not-engine-io"])
def test_packets_a_client_may_not_send_close_the_session(live_server, ctx, frame):
    session = RawSession(live_server)
    session.ws.send(frame)
    session.closed_by_server()
    # The process goes on serving others.
    company = make_company()
    after = Recorder(live_server, auth={"token": company.token})
    try:
        assert after.wait_for("authenticated") == {"companyId": company.id}
    finally:
        after.close()


def test_polling_first_then_the_upgrade_with_the_token_in_the_polling_header(live_server, ctx, recorders):
    company = make_company()
    client = _open(recorders, live_server, transports=("polling", "websocket"),
                   headers={"x-auth-token": company.token})
    assert client.wait_for("authenticated") == {"companyId": company.id}
    wait_until(lambda: client.transport == "websocket")
    client.emit("getQR", {"companyId": company.id})
    assert client.wait_for("qr", timeout=15)["companyId"] == company.id


def _gauge(base: str, admin_headers: dict[str, str]) -> float:
    text = requests.get(base + "/marketplace/metrics", headers=admin_headers, timeout=5).text
    line = next(line for line in text.splitlines() if line.startswith("ycwa_websocket_connections "))
    return float(line.split()[1])


def test_socketio_connections_count_with_the_plain_sockets(live_server, ctx, recorders, admin_headers):
    before = _gauge(live_server, admin_headers)
    client = _open(recorders, live_server)
    assert _gauge(live_server, admin_headers) == before + 1
    client.close()
    wait_until(lambda: _gauge(live_server, admin_headers) == before)


@pytest.fixture(scope="module")
def limited(make_app, backends, service_env, run_dir) -> Iterator[Stack]:
    # Two gunicorn processes (WebSocket only: a polling session lives in one process); counters in Redis.
    stack = start_stack(make_app, backends, service_env, run_dir, web=True, web_workers=2,
                        RATELIMIT_ENABLED="true", RATELIMIT_PUBLIC="10/minute")
    yield stack
    stack.stop()


def test_five_connections_per_minute_per_ip_over_both_protocols(limited, recorders):
    assert limited.base_url
    for _ in range(3):
        _open(recorders, limited.base_url)
    plain = [WsClient(limited.base_url.replace("http://", "ws://") + "/marketplace/ws") for _ in range(2)]
    try:
        with pytest.raises(Refused) as refused:
            _open(recorders, limited.base_url)
        assert refused.value.data["message"] == "Too many requests"
        assert 0 < refused.value.data["data"]["retry_after"] <= 60
        late = WsClient(limited.base_url.replace("http://", "ws://") + "/marketplace/ws")
        assert late.wait_for("error")["message"] == "Too many requests"
        late.close()
    finally:
        for client in plain:
            client.close()
        limited.clean()


@pytest.mark.parametrize("protocol", ["socketio", "plain"])
def test_socket_actions_count_against_the_public_limit_of_their_http_twins(limited, recorders, protocol):
    assert limited.base_url
    with limited.app.app_context():
        company = make_company()
        db.session.remove()
    client: Recorder | WsClient
    if protocol == "socketio":
        client = _open(recorders, limited.base_url, auth={"token": company.token})  # 1 of 10
        send = client.emit
    else:
        client = WsClient(limited.base_url.replace("http://", "ws://") + f"/marketplace/ws?token={company.token}")
        send = client.send
    try:
        client.wait_for("authenticated")
        for _ in range(300):  # 9 pass; the rest are refused without enqueueing anything
            send("getPairingCode", {"phone": "+79001234567"})
        wait_until(lambda: len(client.named("error")) == 291, timeout=20)
        assert all(e["message"] == "Too many requests" and 0 < e["retry_after"] <= 60 for e in client.named("error"))
        # The counter is HTTP's: the public endpoints (GET /qr, POST /pairing-code, ...) share it.
        assert requests.get(limited.base_url + "/marketplace/test", timeout=5).status_code == 429
    finally:
        if isinstance(client, WsClient):
            client.close()
        limited.clean()


@pytest.mark.parametrize(("setting", "origin", "allowed"), [
    ("", "http://localhost", True),  # the service's own origin (the test client's host)
    ("", "https://salon.example", False),
    ("https://salon.example, https://crm.example", "https://crm.example", True),
    ("https://salon.example", "https://evil.example", False),
    ("*", "https://anyone.example", True),
])
def test_socketio_cors_origins_decide_which_browser_origins_may_connect(make_app, setting, origin, allowed):
    client = make_app(socketio_cors_origins=setting).test_client()
    answer = client.get("/socket.io/?EIO=4&transport=polling", headers={"Origin": origin})
    assert (answer.status_code == 200) is allowed
    if allowed:
        assert answer.headers["Access-Control-Allow-Origin"] == origin
