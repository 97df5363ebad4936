"""200 live clients that stop reading, against one gunicorn process: the healthy clients of the same and of
other companies still get every event once and at their usual latency, the process stays healthy and its
memory bounded, and the stuck clients are cut off (they reconnect and get the current state on connect)."""

from __future__ import annotations

import base64
import json
import os
import statistics
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import pytest
import requests
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

from tests.factories import make_company
from tests.socketio_client import NAMESPACE, Recorder
from tests.stuck_clients import StuckPolling, stuck_plain, stuck_socketio
from tests.support import wait_until
from tests.whatsapp_stack import Stack, start_stack

# Per company: plain WebSockets, Socket.IO WebSockets, Socket.IO long-polling sessions that stop reading.
STUCK = {"plain": 50, "socketio": 40, "polling": 10}
# Each stuck socket takes 2-3 MB into its buffers on loopback before a send blocks. The events are large so
# that those fill in seconds, yet small enough that the 256 KiB a healthy client may have waiting is some
# eight of them: a healthy client (here, threads of the test's own process) that stalls half a second is
# not taken for a stuck one.
EVENT_BYTES = 32 * 1024
LOAD_EVENTS = 128  # per company: more than those buffers hold, more than any per-client queue allows
BASELINE_EVENTS = 8
INTERVAL = 0.04
# A delivery slower than this means some socket's send held another's (one blocked send takes 5 s).
LATENCY_BOUND = 2.0
RSS_GROWTH_BOUND_MB = 300


class Timed:
    """When each ``qr`` event (by its ``seq``) reached one healthy client."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.arrivals: dict[int, list[float]] = {}

    def arrived(self, data: Any) -> None:
        self.arrivals.setdefault(int(data["seq"]), []).append(time.monotonic())


class HealthyPlain(Timed):
    """A ``/marketplace/ws`` client reading every frame on its own thread."""

    def __init__(self, base_url: str, token: str, stack: ExitStack) -> None:
        super().__init__("plain")
        url = base_url.replace("http://", "ws://") + f"/marketplace/ws?token={token}"
        self._ws = stack.enter_context(connect(url, open_timeout=10, max_size=None))
        self.ready = threading.Event()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        try:
            for raw in self._ws:
                frame = json.loads(raw)
                if frame["event"] == "status":
                    self.ready.set()
                elif frame["event"] == "qr":
                    self.arrived(frame["data"])
        except ConnectionClosed:
            pass  # the events it missed fail the test


class HealthySocketIO(Timed):
    """python-socketio's client over ``transport``."""

    def __init__(self, base_url: str, token: str, transport: str, stack: ExitStack) -> None:
        super().__init__(transport)
        self.recorder = Recorder(base_url, transports=(transport,), auth={"token": token})
        stack.callback(self.recorder.close)
        self.recorder.sio.on("qr", self.arrived, namespace=NAMESPACE)
        self.ready = threading.Event()
        wait_until(lambda: self.recorder.named("status"), timeout=15)
        self.ready.set()


def _worker_pid(stack: Stack) -> int:
    master = stack.processes[-1].proc
    assert master is not None
    children = Path(f"/proc/{master.pid}/task/{master.pid}/children").read_text().split()
    assert len(children) == 1
    return int(children[0])


def _status_of(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise KeyError(field)


def _sockets_of(pid: int) -> int:
    """How many sockets the process holds open (its own closes count at once, unsent data or not)."""
    found = 0
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            found += os.readlink(fd).startswith("socket:")
        except FileNotFoundError:
            pass  # closed since the listing
    return found


def _publish(stack: Stack, company_ids: list[int], seqs: range) -> dict[int, float]:
    """Publish a large ``qr`` event per ``seq`` (alternating companies) through Redis: seq -> publication time."""
    blob = base64.b64encode(os.urandom(EVENT_BYTES * 3 // 4)).decode()
    bus = stack.app.extensions["bus"]
    published: dict[int, float] = {}
    for seq in seqs:
        company_id = company_ids[seq % len(company_ids)]
        published[seq] = time.monotonic()
        bus.emit(company_id, "qr", {"qr": "data:image/png;base64," + blob, "companyId": company_id,
                                    "expires_in": 20, "seq": seq})
        time.sleep(INTERVAL)
    return published


def _latencies(healthy: dict[int, list[Timed]], company_ids: list[int], published: dict[int, float]) -> list[float]:
    """Each healthy client's latency for each event of its company, once all have arrived (or the bound passed)."""
    expected = {c: [s for s in published if company_ids[s % len(company_ids)] == c] for c in company_ids}

    def everything_arrived() -> bool:
        return all(set(client.arrivals) >= set(expected[c]) for c, clients in healthy.items() for client in clients)

    try:
        wait_until(everything_arrived, timeout=LATENCY_BOUND + 60, interval=0.05)
    except AssertionError:
        missing = {f"{client.name} of {c}": sorted(set(expected[c]) - set(client.arrivals))
                   for c, clients in healthy.items() for client in clients}
        raise AssertionError(f"events missing: { {k: v for k, v in missing.items() if v} }") from None
    found: list[float] = []
    for company_id, clients in healthy.items():
        for client in clients:
            assert all(company_ids[seq % len(company_ids)] == company_id for seq in client.arrivals), client.name
            assert sorted(set(client.arrivals) & set(published)) == expected[company_id], client.name
            assert all(len(times) == 1 for times in client.arrivals.values()), client.name  # each exactly once
            found += [client.arrivals[seq][0] - published[seq] for seq in expected[company_id]]
    return found


def _describe(name: str, found: list[float]) -> str:
    ordered = sorted(found)
    return (f"{name}: median {statistics.median(ordered) * 1000:.0f} ms, "
            f"p99 {ordered[int(len(ordered) * 0.99)] * 1000:.0f} ms, max {ordered[-1] * 1000:.0f} ms")


@pytest.fixture(scope="module")
def stack(make_app, backends, service_env, run_dir) -> Iterator[Stack]:
    # 200 stuck sockets and the healthy ones each hold a gunicorn thread (the tests' default is 32); the
    # per-process socket cap (WEBSOCKET_MAX_PER_PROCESS, 480) is left at its production default.
    stack = start_stack(make_app, backends, service_env, run_dir, web=True, web_threads=320)
    yield stack
    stack.stop()


def _open_stuck(stack: Stack, port: int, tokens: list[str]) -> list[tuple[str, Any]]:
    kinds: dict[str, Callable[[str], Any]] = {
        "plain": lambda token: stuck_plain(port, token),
        "socketio": lambda token: stuck_socketio(port, token),
        "polling": lambda token: StuckPolling(str(stack.base_url), token),
    }
    return [(kind, kinds[kind](token)) for token in tokens for kind, count in STUCK.items() for _ in range(count)]


def test_clients_that_stop_reading_delay_no_one_and_are_cut_off(stack: Stack) -> None:
    assert stack.base_url
    port = int(stack.base_url.rsplit(":", 1)[1])
    with stack.app.app_context():
        first, second = make_company(), make_company()
    company_ids = [first.id, second.id]
    with ExitStack() as opened:
        healthy = {
            first.id: [HealthyPlain(stack.base_url, first.token, opened),
                       HealthyPlain(stack.base_url, first.token, opened),
                       HealthySocketIO(stack.base_url, first.token, "websocket", opened),
                       HealthySocketIO(stack.base_url, first.token, "websocket", opened),
                       HealthySocketIO(stack.base_url, first.token, "polling", opened)],
            second.id: [HealthyPlain(stack.base_url, second.token, opened),
                        HealthySocketIO(stack.base_url, second.token, "websocket", opened)],
        }
        for clients in healthy.values():
            for client in clients:
                assert client.ready.wait(15), client.name
        pid = _worker_pid(stack)
        baseline = _latencies(healthy, company_ids, _publish(stack, company_ids, range(BASELINE_EVENTS)))
        rss_before, sockets_before = _status_of(pid, "VmRSS") // 1024, _sockets_of(pid)

        stuck = _open_stuck(stack, port, [first.token, second.token])
        for _, client in stuck:
            opened.callback(client.close)
        assert len(stuck) == 2 * sum(STUCK.values())
        started = time.monotonic()
        loaded = _latencies(healthy, company_ids,
                            _publish(stack, company_ids, range(BASELINE_EVENTS, BASELINE_EVENTS + 2 * LOAD_EVENTS)))
        print(_describe("baseline", baseline), "|", _describe(f"with {len(stuck)} stuck", loaded))
        assert max(loaded) < LATENCY_BOUND, _describe("with stuck clients", loaded)

        assert requests.get(stack.base_url + "/marketplace/health/live", timeout=5).status_code == 200
        rss_after = _status_of(pid, "VmRSS") // 1024
        print(f"worker RSS {rss_before} -> {rss_after} MB, {_status_of(pid, 'Threads')} threads")
        assert rss_after - rss_before < RSS_GROWTH_BOUND_MB
        # Cut off well before any ping timeout (Engine.IO's 25 + 20 s, the plain socket's 2 × 25 s) would: the
        # process closes their sockets (seen without reading them, which would unstick them), and each client
        # then reads what it was sent up to the end of the stream; the polling sessions are gone.
        wait_until(lambda: _sockets_of(pid) <= sockets_before + 4,
                   timeout=max(1.0, 30 - (time.monotonic() - started)), interval=0.5)
        assert [kind for kind, client in stuck if not client.cut_off(timeout=5)] == []
        # The healthy clients are still served.
        after = _latencies(healthy, company_ids,
                           _publish(stack, company_ids, range(BASELINE_EVENTS + 2 * LOAD_EVENTS,
                                                              2 * BASELINE_EVENTS + 2 * LOAD_EVENTS)))
        assert max(after) < LATENCY_BOUND, _describe("after the cut-off", after)
