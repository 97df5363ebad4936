"""One socket's sends: a client that stops reading never holds the event-bus thread, and is cut off when its
send times out or when it falls too far behind."""

from __future__ import annotations

import socket
import threading
import time

from services.platform.pubsub import MemoryEventBus
from tests.support import wait_until
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


class _Pair:
    """A stuck client (tiny buffers, never reads) and a live one (read on a thread), both watching company 1."""

    def __init__(self, bus: MemoryEventBus) -> None:
        self.stuck_server, self.stuck_client = socket.socketpair()
        self.live_server, self.live_client = socket.socketpair()
        self.stuck_server.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
        self.received: list[bytes] = []
        self._reader = threading.Thread(target=_drain, args=(self.live_client, self.received), daemon=True)
        self._reader.start()
        self.stuck = ws_hub.SocketConnection(_RawServer(self.stuck_server), bus)  # type: ignore[arg-type]
        self.live = ws_hub.SocketConnection(_RawServer(self.live_server), bus)  # type: ignore[arg-type]
        self.stuck.watch(1)
        self.live.watch(1)

    def live_count(self, event: bytes) -> int:
        return b"".join(list(self.received)).count(b'"event": "' + event + b'"')

    def stuck_was_shut_down(self) -> bool:
        """The stuck peer reads what had arrived, then the end of the stream."""
        self.stuck_client.settimeout(2)
        _drain(self.stuck_client, [])
        return True

    def live_stream(self) -> bytes:
        self.live.close()
        self.live_server.shutdown(socket.SHUT_WR)
        self._reader.join(timeout=5)
        return b"".join(self.received)

    def close(self) -> None:
        self.stuck.close()
        for sock in (self.stuck_server, self.stuck_client, self.live_server, self.live_client):
            sock.close()


def test_a_send_that_times_out_cuts_the_client_off_and_never_holds_the_bus(monkeypatch):
    monkeypatch.setattr(ws_hub, "SEND_TIMEOUT_SECONDS", 3.0)
    bus = MemoryEventBus()
    pair = _Pair(bus)
    try:
        started = time.monotonic()
        bus.emit(1, "whatsapp.qr", {"blob": "x" * (ws_hub.OUTBOX_BYTES // 2)})  # more than the stuck peer holds
        bus.emit(1, "whatsapp.status", {"status": "WORKING"})
        assert time.monotonic() - started < 1.5  # queued for each socket's writer, not written here
        wait_until(lambda: not pair.stuck.open, timeout=10)
        assert pair.live.open and pair.stuck_was_shut_down()
        everything = pair.live_stream()
        assert everything.count(b'"event": "whatsapp.qr"') == 1 and b'"event": "whatsapp.status"' in everything
    finally:
        pair.close()


def test_a_client_that_falls_too_far_behind_is_cut_off_at_once(monkeypatch):
    monkeypatch.setattr(ws_hub, "SEND_TIMEOUT_SECONDS", 60.0)  # only the outbox bound can end it in time
    bus = MemoryEventBus()
    pair = _Pair(bus)
    try:
        frame = {"blob": "x" * (ws_hub.OUTBOX_BYTES // 4)}
        for sent in range(1, 9):  # the first is being written; the next four fill the outbox; the sixth is refused
            bus.emit(1, "whatsapp.qr", frame)
            wait_until(lambda sent=sent: pair.live_count(b"whatsapp.qr") == sent)  # the live client keeps up
        assert not pair.stuck.open and pair.stuck_was_shut_down()
        assert pair.live.open
        assert pair.live_stream().count(b'"event": "whatsapp.qr"') == 8  # each once
    finally:
        pair.close()
