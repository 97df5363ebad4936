"""One socket's sends: a client that stops reading cannot hold the event-bus thread."""

from __future__ import annotations

import socket
import threading
import time

from services.platform.pubsub import MemoryEventBus
from web import ws_hub


class _RawServer:
    """The part of simple-websocket's Server that SocketConnection uses: ``sock`` and ``send``,
    which, like simple-websocket's, calls ``sock.send`` once and ignores a short count."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock

    def send(self, data: str) -> None:
        self.sock.send(data.encode())


def _drain(sock: socket.socket, into: list[bytes]) -> None:
    while chunk := sock.recv(1 << 16):
        into.append(chunk)


def test_a_client_that_stops_reading_is_cut_off_and_the_others_still_get_events(monkeypatch):
    monkeypatch.setattr(ws_hub, "SEND_TIMEOUT_SECONDS", 0.3)
    bus = MemoryEventBus()
    stuck_server, stuck_client = socket.socketpair()
    live_server, live_client = socket.socketpair()
    stuck_server.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
    received: list[bytes] = []
    reader = threading.Thread(target=_drain, args=(live_client, received), daemon=True)
    reader.start()
    stuck = ws_hub.SocketConnection(_RawServer(stuck_server), bus)  # type: ignore[arg-type]
    live = ws_hub.SocketConnection(_RawServer(live_server), bus)  # type: ignore[arg-type]
    stuck.watch(1)
    live.watch(1)
    started = time.monotonic()
    bus.emit(1, "whatsapp.qr", {"blob": "x" * 500_000})  # far more than the stuck peer's buffers hold
    assert time.monotonic() - started < 3
    assert not stuck.open and live.open
    bus.emit(1, "whatsapp.status", {"status": "WORKING"})
    # The stuck socket was shut down: its peer reads what had arrived, then the end of the stream.
    stuck_client.settimeout(2)
    _drain(stuck_client, [])
    live_server.shutdown(socket.SHUT_WR)
    reader.join(timeout=5)
    everything = b"".join(received)
    assert everything.count(b'"event": "whatsapp.qr"') == 1 and b'"event": "whatsapp.status"' in everything
    for sock in (stuck_server, stuck_client, live_server, live_client):
        sock.close()
