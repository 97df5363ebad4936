"""Live clients that connect, authenticate and then stop reading, for the slow-client tests.

The two WebSocket kinds speak the protocol with wsproto on a raw socket whose receive buffer is tiny, so
the server's sends to them soon block; the polling kind simply never polls again. ``cut_off`` tells,
once the test is done with them, whether the server has ended the connection.
"""

from __future__ import annotations

import json
import socket

import requests
from wsproto import ConnectionType, WSConnection
from wsproto.events import AcceptConnection, Message, Ping, Request, TextMessage

from tests.socketio_client import NAMESPACE

RECEIVE_BUFFER = 4096


class StuckWebSocket:
    """A WebSocket client that reads until ``ready`` accepts a message, and never again."""

    def __init__(self, port: int, target: str) -> None:
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, RECEIVE_BUFFER)
        self.sock.settimeout(30)
        self.sock.connect(("127.0.0.1", port))
        self._ws = WSConnection(ConnectionType.CLIENT)
        self.sock.sendall(self._ws.send(Request(host=f"127.0.0.1:{port}", target=target)))
        self._text = ""

    def read_until(self, ready: str) -> None:
        """Read messages until one starts with ``ready`` (and nothing after it)."""
        while True:
            data = self.sock.recv(RECEIVE_BUFFER)
            if not data:
                raise ConnectionError("the server closed the socket before " + ready)
            self._ws.receive_data(data)
            for event in self._ws.events():
                if isinstance(event, TextMessage):
                    self._text += event.data
                    if event.message_finished:
                        text, self._text = self._text, ""
                        if text.startswith(ready):
                            return
                elif not isinstance(event, (AcceptConnection, Message, Ping)):  # pings go unanswered
                    raise ConnectionError(f"unexpected {event!r} before {ready}")

    def send_text(self, text: str) -> None:
        self.sock.sendall(self._ws.send(TextMessage(data=text)))

    def cut_off(self, timeout: float = 2.0) -> bool:
        """Whether the server has ended the connection: what it had sent is read to the end of the stream."""
        self.sock.settimeout(timeout)
        try:
            while self.sock.recv(1 << 16):
                pass
        except ConnectionResetError:
            return True
        except TimeoutError:
            return False
        return True

    def close(self) -> None:
        self.sock.close()


def stuck_plain(port: int, token: str) -> StuckWebSocket:
    """A ``/marketplace/ws`` client authenticated by its URL token, stopped after its ``status`` snapshot."""
    client = StuckWebSocket(port, f"/marketplace/ws?token={token}")
    client.read_until('{"event": "status"')
    return client


def stuck_socketio(port: int, token: str) -> StuckWebSocket:
    """A Socket.IO WebSocket client of ``/marketplace`` (handshake ``auth`` token), stopped after ``status``."""
    client = StuckWebSocket(port, "/socket.io/?EIO=4&transport=websocket")
    client.read_until("0{")  # Engine.IO's OPEN
    client.send_text(f"40{NAMESPACE}," + json.dumps({"token": token}))
    client.read_until(f'42{NAMESPACE},["status"')
    return client


class StuckPolling:
    """A Socket.IO long-polling client that connects and authenticates, then never polls again."""

    def __init__(self, base_url: str, token: str) -> None:
        self._http = requests.Session()
        self._url = base_url + "/socket.io/?EIO=4&transport=polling"
        opened = self._http.get(self._url, timeout=10)
        opened.raise_for_status()
        self._url += "&sid=" + json.loads(opened.text[1:])["sid"]
        self._http.post(self._url, data=f"40{NAMESPACE}," + json.dumps({"token": token}), timeout=10).raise_for_status()
        received = ""
        while f'42{NAMESPACE},["status"' not in received:
            answer = self._http.get(self._url, timeout=10)
            answer.raise_for_status()
            received += answer.text

    def cut_off(self, timeout: float = 2.0) -> bool:
        """Whether the server has ended the session (a poll is refused; a live one answers or waits)."""
        try:
            return self._http.get(self._url, timeout=timeout).status_code == 400
        except requests.Timeout:
            return False

    def close(self) -> None:
        self._http.close()
