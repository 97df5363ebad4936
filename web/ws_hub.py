"""One open WebSocket: JSON frames sent under a per-connection lock, fed by the process's event bus.

The bus has one Redis subscriber per web process; each socket only registers a callback on its
company's channel, so any web process can serve any socket while workers publish elsewhere.
"""

from __future__ import annotations

import json
import logging
import socket
import struct
import threading
from collections.abc import Callable
from typing import Any

from simple_websocket import ConnectionClosed, Server

from services.platform.pubsub import EventBus, Message, company_channel

log = logging.getLogger(__name__)

# A client that stops reading fills its socket buffer; a send then gives up after this long (and the
# socket is shut down) instead of holding the process's one event-bus thread for every other socket.
SEND_TIMEOUT_SECONDS = 5.0


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
    """A connected client; ``send`` is safe from the handler thread and the bus thread alike."""

    def __init__(self, ws: Server, bus: EventBus) -> None:
        self._ws = ws
        self._bus = bus
        self._lock = threading.Lock()
        self._unsubscribe: Callable[[], None] | None = None
        self.company_id: int | None = None
        self.open = True
        ws.sock = bounded_sends(ws.sock)

    def send(self, event: str, data: dict[str, Any]) -> None:
        """Send ``{"event", "data"}``; a failed send marks the connection closed."""
        frame = json.dumps({"event": event, "data": data}, ensure_ascii=False)
        with self._lock:
            if not self.open:
                return
            try:
                self._ws.send(frame)
            except (ConnectionClosed, OSError) as exc:
                self.open = False
                if not isinstance(exc, ConnectionClosed):
                    log.info("a WebSocket send failed (%s); closing the socket", exc)
                    self._shut_down()

    def _shut_down(self) -> None:
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
        """Stop receiving events (the socket itself is closed by flask-sock)."""
        self.open = False
        if self._unsubscribe is not None:
            self._unsubscribe()
            self._unsubscribe = None
