"""A python-socketio client that records what the ``/marketplace`` namespace sends, for the tests."""

from __future__ import annotations

import threading
from typing import Any

import socketio

from tests.support import wait_until

NAMESPACE = "/marketplace"


class Refused(Exception):
    """The server refused the namespace connection; ``data`` is what ``connect_error`` carried."""

    def __init__(self, data: Any) -> None:
        super().__init__(data)
        self.data = data


class Recorder:
    """One Socket.IO connection (python-socketio's own client) and every event it received, in order."""

    def __init__(self, base_url: str, transports: tuple[str, ...] = ("websocket",),
                 client_options: dict[str, Any] | None = None, **connect: Any) -> None:
        self.events: list[tuple[str, Any]] = []
        self.disconnected = threading.Event()
        self.sio = socketio.Client(reconnection=False, **(client_options or {}))
        self.sio.on("*", self._record, namespace=NAMESPACE)
        self.sio.on("disconnect", lambda *reason: self.disconnected.set(), namespace=NAMESPACE)
        refusals: list[Any] = []
        self.sio.on("connect_error", refusals.append, namespace=NAMESPACE)
        try:
            self.sio.connect(base_url, namespaces=[NAMESPACE], transports=list(transports), wait_timeout=10,
                             **connect)
        except socketio.exceptions.ConnectionError:
            self.sio.disconnect()
            raise Refused(refusals[-1] if refusals else None) from None

    def _record(self, event: str, *args: Any) -> None:
        self.events.append((event, args[0] if args else None))

    def emit(self, event: str, data: Any = None) -> None:
        self.sio.emit(event, data, namespace=NAMESPACE)

    def named(self, event: str) -> list[Any]:
        return [data for name, data in list(self.events) if name == event]

    def wait_for(self, event: str, timeout: float = 10) -> Any:
        return wait_until(lambda: (found := self.named(event)) and found[-1], timeout=timeout)

    @property
    def transport(self) -> str:
        return str(self.sio.transport())

    def close(self) -> None:
        self.sio.disconnect()
