"""A threaded HTTP server on a free port (of loopback unless told): the base of the fake third-party services,
and what the two WhatsApp gateway fakes share."""

from __future__ import annotations

import json
import threading
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Self


class LocalHTTPServer:
    """Serves GET, POST, PUT and DELETE by calling ``self._handle(request, method)`` on a request thread."""

    def __init__(self, address: str = "127.0.0.1") -> None:
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_GET(self) -> None:  # noqa: N802 - http.server's naming
                owner._dispatch(self, "GET")

            def do_POST(self) -> None:  # noqa: N802
                owner._dispatch(self, "POST")

            def do_PUT(self) -> None:  # noqa: N802
                owner._dispatch(self, "PUT")

            def do_DELETE(self) -> None:  # noqa: N802
                owner._dispatch(self, "DELETE")

        self._handler = Handler
        self._failing_with: int | None = None
        self.failed_requests = 0
        self._server = ThreadingHTTPServer((address, 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def _dispatch(self, request: BaseHTTPRequestHandler, method: str) -> None:
        status = self._failing_with
        if status is None:
            self._handle(request, method)
            return
        self.failed_requests += 1
        length = int(request.headers.get("Content-Length") or 0)
        request.rfile.read(length)
        self.reply_json(request, status, {"error": "Service Unavailable", "statusCode": status})

    def go_down(self, status: int | None = None) -> None:
        """The service is away: each request is answered ``status`` (what a proxy in front of a dead
        service says), or, with None, nothing listens on the port any more (connections are refused)."""
        if status is not None:
            self._failing_with = status
            return
        self.stop()

    def come_back(self) -> None:
        """The service answers again, on the same address."""
        if self._failing_with is not None:
            self._failing_with = None
            return
        self._server = ThreadingHTTPServer(self._server.server_address[:2], self._handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self.start()

    def _handle(self, request: BaseHTTPRequestHandler, method: str) -> None:
        raise NotImplementedError

    @staticmethod
    def read_json(request: BaseHTTPRequestHandler) -> Any:
        """The request's JSON body ({} when it has none)."""
        length = int(request.headers.get("Content-Length") or 0)
        return json.loads(request.rfile.read(length)) if length else {}

    @staticmethod
    def reply_json(request: BaseHTTPRequestHandler, status: int, body: Any) -> None:
        """Answer ``status`` with ``body`` as JSON."""
        raw = json.dumps(body).encode()
        request.send_response(status)
        request.send_header("Content-Type", "application/json")
        request.send_header("Content-Length", str(len(raw)))
        request.end_headers()
        request.wfile.write(raw)

    @property
    def url(self) -> str:
        """``http://<address>:<port>``."""
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def start(self) -> Self:
        """Serve in the background."""
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and close the socket."""
        self._server.shutdown()
        self._server.server_close()


class FakeGatewayServer(LocalHTTPServer):
    """What both WhatsApp gateway fakes record (texts sent, calls, numbers not on WhatsApp, the events
    their webhooks took) and how they post an event: once, a failure only dropped, as the real ones do."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: list[tuple[str, str]] = []
        self.sent_text: list[dict[str, Any]] = []
        self.not_on_whatsapp: set[str] = set()
        self.delivered: list[dict[str, Any]] = []
        self._lock = threading.RLock()

    def post_event(self, url: str, body: dict[str, Any], headers: dict[str, str], raw: bytes | None = None) -> None:
        """POST ``body`` (as ``raw`` when the caller signed those bytes) to ``url``; kept in ``delivered``."""
        data = raw if raw is not None else json.dumps(body).encode()
        request = urllib.request.Request(url, data=data, headers=headers, method="POST")
        try:
            with urllib.request.urlopen(request, timeout=5) as response:
                response.read()
            self.delivered.append(body)
        except OSError:
            pass
