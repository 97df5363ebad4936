"""A threaded HTTP server on a free loopback port: the base of the fake third-party services."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Self


class LocalHTTPServer:
    """Serves GET, POST, PUT and DELETE by calling ``self._handle(request, method)`` on a request thread."""

    def __init__(self) -> None:
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_GET(self) -> None:  # noqa: N802 - http.server's naming
                owner._handle(self, "GET")

            def do_POST(self) -> None:  # noqa: N802
                owner._handle(self, "POST")

            def do_PUT(self) -> None:  # noqa: N802
                owner._handle(self, "PUT")

            def do_DELETE(self) -> None:  # noqa: N802
                owner._handle(self, "DELETE")

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

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
        """``http://127.0.0.1:<port>``."""
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
