"""An embedded Redis-protocol server (fakeredis) that other processes reach over ``redis://``."""

from __future__ import annotations

import socket
import threading
from typing import Any

from fakeredis import TcpFakeServer


class _NoDelayServer(TcpFakeServer):
    daemon_threads = True

    def get_request(self) -> tuple[socket.socket, Any]:
        conn, addr = super().get_request()
        # Without TCP_NODELAY every pipelined call waits ~40 ms for the peer's delayed ACK.
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return conn, addr


class EmbeddedRedis:
    """A fakeredis TCP server on a background thread; ``url`` is where clients connect."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0) -> None:
        self._server = _NoDelayServer((host, port), server_type="redis", server_version=(7, 4))
        self._server.daemon_threads = True
        address = self._server.server_address
        self.host, self.port = str(address[0]), int(address[1])
        self._thread = threading.Thread(target=self._server.serve_forever, name="embedded-redis", daemon=True)

    @property
    def url(self) -> str:
        """``redis://host:port/0`` of this server."""
        return f"redis://{self.host}:{self.port}/0"

    def start(self) -> EmbeddedRedis:
        """Serve in the background."""
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and close the listening socket."""
        self._server.shutdown()
        self._server.server_close()


def main() -> None:
    """Run a standalone embedded server: ``python -m devstack.redis_server [port]``."""
    import sys
    import time

    port = int(sys.argv[1]) if len(sys.argv) > 1 else 6390
    server = EmbeddedRedis(port=port).start()
    print(f"embedded Redis at {server.url}", flush=True)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        server.stop()


if __name__ == "__main__":
    main()
