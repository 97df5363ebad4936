"""One open WebSocket: JSON frames queued for the connection's own writer thread, fed by the process's event bus.

The bus has one Redis subscriber per web process; each socket only registers a callback on its
company's channel, so any web process can serve any socket while workers publish elsewhere.
"""

from __future__ import annotations

import json
import logging
import socket
import struct
import threading
from collections import deque
from collections.abc import Callable
from typing import Any

from simple_websocket import ConnectionClosed, Server

from services.platform.pubsub import EventBus, Message, company_channel

log = logging.getLogger(__name__)

# A client that stops reading fills its socket buffer; a send then gives up after this long and the socket
# is shut down, so that its writer thread (or gunicorn's) is not held for good.
SEND_TIMEOUT_SECONDS = 5.0
# What may wait for one client (a plain socket's writer, a Socket.IO session's writer or next poll): a few
# dozen QR events, each some kilobytes of data URL.
OUTBOX_BYTES = 256 * 1024


SLOTS = "websocket_slots"


def init_app(app: Any) -> None:
    """Give ``app`` the counter of this process's open sockets."""
    app.extensions[SLOTS] = SocketSlots()


class SocketSlots:
    """Counts this process's open sockets so they never take every thread HTTP needs."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.open = 0

    def acquire(self, limit: int) -> bool:
        """Take a slot unless ``limit`` sockets are already open here."""
        with self._lock:
            if self.open >= limit:
                return False
            self.open += 1
            return True

    def release(self) -> None:
        """Give a slot back."""
        with self._lock:
            self.open -= 1


class _SendAll:
    """The socket, with a ``send`` that writes everything or raises. simple-websocket calls
    ``send`` and ignores a short count, which after the send timeout would cut a frame in two."""

    def __init__(self, sock: socket.socket) -> None:
        self._sock = sock

    def send(self, data: bytes, flags: int = 0) -> int:
        self._sock.sendall(data, flags)
        return len(data)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._sock, name)


def bounded_sends(sock: socket.socket) -> Any:
    """``sock`` with every send bounded by ``SEND_TIMEOUT_SECONDS`` and written whole (for simple-websocket)."""
    if isinstance(sock, _SendAll):
        return sock
    seconds, fraction = divmod(SEND_TIMEOUT_SECONDS, 1)
    # SO_SNDTIMEO bounds each send() only; reads (simple-websocket's own thread) are unaffected.
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDTIMEO, struct.pack("@ll", int(seconds), int(fraction * 1_000_000)))
    return _SendAll(sock)


class SocketConnection:
    """A connected client. ``send`` only queues the frame: the connection's own writer thread writes it, so the
    bus thread (and every other socket) never waits on this client. One that falls ``OUTBOX_BYTES`` behind (so
    at most that and one frame wait), or whose send times out, is cut off: its page reconnects and gets the
    current ``status`` on connect."""

    def __init__(self, ws: Server, bus: EventBus) -> None:
        self._ws = ws
        self._bus = bus
        self._ready = threading.Condition()
        self._outbox: deque[str] = deque()
        self._queued = 0  # characters waiting in the outbox
        self._unsubscribe: Callable[[], None] | None = None
        self.company_id: int | None = None
        self.open = True
        ws.sock = bounded_sends(ws.sock)
        self._writer = threading.Thread(target=self._write, name="websocket-writer", daemon=True)
        self._writer.start()

    def send(self, event: str, data: dict[str, Any]) -> None:
        """Queue ``{"event", "data"}`` for the writer; a client too far behind is cut off instead."""
        frame = json.dumps({"event": event, "data": data}, ensure_ascii=False)
        with self._ready:
            if not self.open:
                return
            if self._queued >= OUTBOX_BYTES:
                log.info("a WebSocket client fell %d characters behind; closing the socket", self._queued)
                self._cut_off()
                return
            self._outbox.append(frame)
            self._queued += len(frame)
            self._ready.notify()

    def _write(self) -> None:
        while True:
            with self._ready:
                while self.open and not self._outbox:
                    self._ready.wait()
                if not self.open:
                    return
                frame = self._outbox.popleft()
                self._queued -= len(frame)
            try:
                self._ws.send(frame)
            except (ConnectionClosed, OSError) as exc:
                with self._ready:
                    if not isinstance(exc, ConnectionClosed):
                        log.info("a WebSocket send failed (%s); closing the socket", exc)
                        self._cut_off()
                    self._stop()
                return

    def _stop(self) -> None:
        self.open = False
        self._outbox.clear()
        self._queued = 0
        self._ready.notify()

    def _cut_off(self) -> None:
        self._stop()
        # The reader thread sees EOF, so the handler's receive() ends and the client reconnects.
        try:
            self._ws.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass

    def watch(self, company_id: int) -> None:
        """Receive this company's events (and no other company's) from now on."""
        if self._unsubscribe is not None and self.company_id != company_id:
            self._unsubscribe()
            self._unsubscribe = None
        self.company_id = company_id
        if self._unsubscribe is None:
            self._unsubscribe = self._bus.subscribe(company_channel(company_id), self._deliver)

    def _deliver(self, message: Message) -> None:
        if message.get("company_id") == self.company_id and isinstance(message.get("event"), str):
            self.send(message["event"], message.get("data") or {})

    def close(self) -> None:
        """Stop receiving events and let the writer finish the frame it is sending (the socket itself is then
        closed by flask-sock, whose close frame must not cut into that one)."""
        with self._ready:
            self._stop()
        if self._unsubscribe is not None:
            self._unsubscribe()
            self._unsubscribe = None
        if self._writer is not threading.current_thread():
            self._writer.join(timeout=SEND_TIMEOUT_SECONDS + 1)
