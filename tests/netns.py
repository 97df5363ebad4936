"""Separate hosts on one machine: network namespaces joined by a bridge (iproute2's ``ip netns``, veth pairs).

Each host is a namespace with one address on a /24 of its own; this machine is ``.1`` on the bridge and can
take more addresses there (clients that must come from different addresses). The shared PostgreSQL and
Redis listen on 127.0.0.1 only, which a namespace cannot reach (its loopback is its own): ``forward`` puts a
socat relay on this machine's bridge address in front of them, so they are reached across the veth as a
compose container reaches them, without touching their configuration. ``close`` removes every namespace,
veth and the bridge, and stops the relays."""

from __future__ import annotations

import random
import shutil
import socket
import subprocess
import uuid
from pathlib import Path
from urllib.parse import urlsplit

from tests.support import Host, ServiceProcess, wait_until


def unavailable() -> str | None:
    """Why namespaces cannot be made here (None when they can)."""
    for program in ("ip", "socat"):
        if shutil.which(program) is None:
            return f"{program} is not installed (make test installs it as root)"
    probe = f"ycwa-probe-{uuid.uuid4().hex[:8]}"
    made = subprocess.run(["ip", "netns", "add", probe], capture_output=True, text=True)
    if made.returncode != 0:
        return f"network namespaces are not available: {made.stderr.strip()}"
    subprocess.run(["ip", "netns", "del", probe], capture_output=True)
    return None


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, text=True, timeout=10)


def _accepts(relay: ServiceProcess, address: str, port: int) -> bool:
    if not relay.running:
        raise RuntimeError(f"{relay.name} exited:\n{relay.output()[-2000:]}")
    try:
        socket.create_connection((address, port), timeout=1).close()
        return True
    except OSError:
        return False


def _free_prefix() -> str:
    """A 10.x.y /24 that no interface of this machine has (runs at the same time pick their own)."""
    taken = subprocess.run(["ip", "-4", "-o", "addr"], capture_output=True, text=True, check=True).stdout
    while True:
        prefix = f"10.{random.randrange(128, 255)}.{random.randrange(256)}"
        if f" {prefix}." not in taken:
            return prefix


class Network:
    """A bridge with this machine on ``.1`` and namespaces added by ``host``."""

    def __init__(self, log_folder: Path) -> None:
        self.tag = uuid.uuid4().hex[:6]
        self.prefix = _free_prefix()
        self.address = f"{self.prefix}.1"
        self.bridge = f"ycb{self.tag}"
        self.log_folder = log_folder
        self.namespaces: list[str] = []
        self.relays: list[ServiceProcess] = []
        _ip("link", "add", "name", self.bridge, "type", "bridge")
        try:
            _ip("addr", "add", f"{self.address}/24", "dev", self.bridge)
            _ip("link", "set", self.bridge, "up")
        except BaseException:
            self.close()
            raise

    def host(self, name: str, number: int) -> Host:
        """A new namespace with address ``.number``, on the bridge through a veth pair."""
        netns = f"ycwa-{self.tag}-{name}"
        _ip("netns", "add", netns)
        self.namespaces.append(netns)
        outside, inside = f"ycv{self.tag}{number}", f"ycn{self.tag}{number}"
        _ip("link", "add", outside, "type", "veth", "peer", "name", inside)
        _ip("link", "set", inside, "netns", netns)
        _ip("link", "set", outside, "master", self.bridge, "up")
        _ip("-n", netns, "addr", "add", f"{self.prefix}.{number}/24", "dev", inside)
        _ip("-n", netns, "link", "set", inside, "up")
        _ip("-n", netns, "link", "set", "lo", "up")
        return Host(f"{self.prefix}.{number}", netns)

    def client_address(self, number: int) -> str:
        """One more address of this machine on the bridge (``.number``), for clients to connect from."""
        address = f"{self.prefix}.{number}"
        _ip("addr", "add", f"{address}/32", "dev", self.bridge)
        return address

    def reachable(self, url: str) -> str:
        """``url`` as the namespaces reach it: a server on this machine's loopback behind a relay on the bridge."""
        parts = urlsplit(url)
        if parts.hostname not in ("127.0.0.1", "localhost") or parts.port is None:
            return url
        port = parts.port
        listen, target = f"TCP-LISTEN:{port},bind={self.address},fork,reuseaddr", f"TCP:127.0.0.1:{port}"
        relay = ServiceProcess(f"relay-{port}", [str(shutil.which("socat")), listen, target], {},
                               self.log_folder / f"relay-{self.tag}-{port}.log").start()
        self.relays.append(relay)
        wait_until(lambda: _accepts(relay, self.address, port), timeout=10)
        return parts._replace(netloc=parts.netloc.replace(f"{parts.hostname}:", f"{self.address}:")).geturl()

    def close(self) -> None:
        """Stop the relays and remove the namespaces (their veths go with them) and the bridge."""
        for relay in self.relays:
            relay.stop()
        for netns in self.namespaces:
            subprocess.run(["ip", "netns", "del", netns], capture_output=True)
        subprocess.run(["ip", "link", "del", self.bridge], capture_output=True)
