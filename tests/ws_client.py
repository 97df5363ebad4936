"""A plain WebSocket client for ``/marketplace/ws`` that records every frame, for the tests."""

from __future__ import annotations

import json
import threading
from contextlib import ExitStack
from typing import Any

from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

from tests.support import wait_until


class WsClient:
    """A socket client with its own reader thread collecting every frame.

    websockets' client, not simple-websocket's: the server answers a token in the URL or a header
    right after the handshake, and simple-websocket's client leaves frames that arrive together
    with the handshake response unread until more data comes.
    """

    def __init__(self, url: str, headers: dict[str, str] | None = None, **connect_options: Any) -> None:
        """Connect to ``url``; ``connect_options`` go to websockets' ``connect`` (``source_address`` …)."""
        self.frames: list[dict[str, Any]] = []
        self.closed = threading.Event()
        self.close_code: int | None = None
        self._stack = ExitStack()
        self._ws = self._stack.enter_context(connect(url, additional_headers=headers, open_timeout=10,
                                                     **connect_options))
        self.handshake_headers = self._ws.response.headers if self._ws.response else None
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        try:
            for raw in self._ws:  # ends when the server closes the socket
                self.frames.append(json.loads(raw))
        except ConnectionClosed:
            pass
        finally:
            self.close_code = self._ws.close_code
            self.closed.set()

    def send(self, event: str, data: dict[str, Any]) -> None:
        self.send_raw(json.dumps({"event": event, "data": data}))

    def send_raw(self, text: str) -> None:
        self._ws.send(text)

    def named(self, event: str) -> list[dict[str, Any]]:
        return [f["data"] for f in list(self.frames) if f["event"] == event]

    def wait_for(self, event: str, timeout: float = 10) -> dict[str, Any]:
        return wait_until(lambda: (found := self.named(event)) and found[-1], timeout=timeout)

    def close(self) -> None:
        self._stack.close()
        self._thread.join(timeout=5)
