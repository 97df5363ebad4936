"""Engine.IO under Socket.IO (``web.socketio_server``): python-engineio's server and its WebSocket transport with
this service's rules for sockets (the frame cap, the send timeout, sessions ended without waiting)."""

from __future__ import annotations

import logging
import queue
import socket
from collections.abc import Callable
from typing import Any

import engineio
from engineio.async_drivers._websocket_wsgi import SimpleWebSocketWSGI
from simple_websocket import ConnectionClosed

from web.ws_hub import OUTBOX_BYTES, bounded_sends

log = logging.getLogger(__name__)

ENGINE_IO_TYPES = "0123456"  # OPEN … NOOP: the first character of every Engine.IO text packet
ENGINE_IO_CLOSE = "1"


class PacketQueue(queue.Queue):
    """A session's packets waiting for its WebSocket writer or its next poll, and how many characters they hold.
    (A room's event is one packet shared by every member: what a client that stops reading holds is counted
    for it, though the memory is one copy per event.)"""

    def _init(self, maxsize: int) -> None:
        super()._init(maxsize)
        self.characters = 0

    def _put(self, item: Any) -> None:
        super()._put(item)
        self.characters += _size(item)

    def _get(self) -> Any:
        item = super()._get()
        self.characters -= _size(item)
        return item


def _size(pkt: Any) -> int:
    data = getattr(pkt, "data", None)
    return len(data) if isinstance(data, (str, bytes)) else 1


class EngineWebSocket(SimpleWebSocketWSGI):
    """simple-websocket as python-engineio runs it, with the plain socket's rules: the frame cap is applied
    while a frame arrives (Engine.IO's own check comes once the whole frame is in memory); a send to a
    client that stopped reading gives up after the send timeout and shuts the socket down, so that the
    reader ends too; and a text frame that is no Engine.IO packet closes the socket with 1002 (Engine.IO
    would raise out of its handler)."""

    def __init__(self, handler: Callable[..., Any], server: Any, **options: Any) -> None:
        super().__init__(handler, server, max_message_size=server.max_http_buffer_size, **options)

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        for key in ("gunicorn.socket", "werkzeug.socket"):
            if key in environ:
                environ[key] = bounded_sends(environ[key])
        return super().__call__(environ, start_response)

    def wait(self) -> Any:
        data = super().wait()
        if isinstance(data, str) and not (data and data[0] in ENGINE_IO_TYPES):
            try:
                self.ws.close(reason=1002, message="not an Engine.IO packet")
            except (ConnectionClosed, OSError):
                pass
            return ENGINE_IO_CLOSE  # Engine.IO ends the session (or the upgrade) as if the client had asked
        return data

    def send(self, message: Any) -> Any:
        try:
            return super().send(message)
        except OSError:
            self._shut_down()
            raise

    def close(self) -> None:
        try:
            super().close()
        except OSError:
            self._shut_down()

    def _shut_down(self) -> None:
        try:
            self.ws.sock.shutdown(socket.SHUT_RDWR)  # the reader thread sees EOF
        except OSError:
            pass


class EngineServer(engineio.Server):
    """python-engineio's server on ``EngineWebSocket``, ending sessions without waiting, or once they fall behind.

    Upstream ``disconnect`` waits until the client has read Engine.IO's CLOSE; it is called from the
    request that found a body too long or a packet of an unknown type, so a polling client that sends one
    and never polls again would hold that request's thread for good. Upstream queues are unbounded: a client
    that stops reading (or polling) would gather every event until its ping timeout.
    """

    _async: dict[str, Any]  # the async mode's primitives, chosen by python-engineio

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        self._async = {**self._async, "websocket": EngineWebSocket, "queue": PacketQueue}

    def send_packet(self, sid: str, pkt: Any) -> None:
        """Queue ``pkt`` for the session; one already ``OUTBOX_BYTES`` behind, as a plain socket may be, is ended
        instead (its client reconnects and gets the current state). Never waits: room events come from the bus
        thread."""
        session = self.sockets.get(sid)
        waiting = session.queue.characters if session is not None else 0
        if waiting >= OUTBOX_BYTES:
            log.info("a Socket.IO client fell %d characters behind; ending its session", waiting)
            self.disconnect(sid)
            return
        super().send_packet(sid, pkt)

    def disconnect(self, sid: str | None = None) -> None:
        """End one session (every session without ``sid``); the client reads CLOSE when it next polls."""
        for eio_sid in [sid] if sid is not None else list(self.sockets):
            session = self.sockets.pop(eio_sid, None)
            if session is not None:
                session.close(wait=False, reason=self.reason.SERVER_DISCONNECT)
