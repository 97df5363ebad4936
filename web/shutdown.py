"""Open WebSockets of this process, so a stopping worker can close them with 1001 (going away).

The WebSocket handler calls ``register(ws)`` once the socket is open and ``unregister(ws)`` when
it ends; gunicorn's hooks (``gunicorn.conf.py``) call ``close_all`` when the worker is told to
stop, so clients learn at once that they should reconnect (to another worker) instead of the
drain waiting for them until the graceful timeout.
"""

from __future__ import annotations

import logging
import threading
from typing import Any, Protocol

from flask import Flask, current_app

log = logging.getLogger(__name__)

GOING_AWAY = 1001
EXTENSION = "websockets"


class Closable(Protocol):
    def close(self, reason: int | None = None, message: str | None = None) -> None: ...


class SocketRegistry:
    """The open sockets of one app in one process (thread-safe)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._open: set[Closable] = set()

    def add(self, conn: Closable) -> None:
        with self._lock:
            self._open.add(conn)

    def discard(self, conn: Closable) -> None:
        with self._lock:
            self._open.discard(conn)

    def __len__(self) -> int:
        with self._lock:
            return len(self._open)

    def close_all(self, code: int = GOING_AWAY, reason: str = "server shutting down") -> int:
        """Send a close frame with ``code`` to every open socket; returns how many were open."""
        with self._lock:
            conns, self._open = list(self._open), set()
        for conn in conns:
            try:
                conn.close(reason=code, message=reason)
            except Exception:  # already closed by the peer, or its transport is gone
                log.debug("socket already closed", exc_info=True)
        return len(conns)


def init_app(app: Flask) -> None:
    """Give ``app`` its registry."""
    app.extensions[EXTENSION] = SocketRegistry()


def register(conn: Closable) -> None:
    """Track an open socket of the current app until ``unregister``."""
    current_app.extensions[EXTENSION].add(conn)


def unregister(conn: Closable) -> None:
    """Stop tracking a socket (call in the handler's ``finally``)."""
    current_app.extensions[EXTENSION].discard(conn)


def close_all(app: Any, code: int = GOING_AWAY) -> int:
    """Close every open socket of ``app`` (gunicorn hooks pass ``worker.wsgi``); 0 without a registry."""
    registry = getattr(app, "extensions", {}).get(EXTENSION)
    if registry is None:
        return 0
    closed = int(registry.close_all(code))
    if closed:
        log.info("closed %d WebSocket(s) with %d on shutdown", closed, code)
    return closed
