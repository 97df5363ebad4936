"""The embedded Redis of ``make run`` and of the tests' fallback: a real server that idles quietly."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import redis

from tests.support import ROOT, free_port, wait_until

pytestmark = pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads CPU time from /proc")

# The budget of idle `make run`, every process together (docs/BENCHMARKS.md, "Idle `make run`"):
# the embedded server with a stack's worth of idle clients has to fit in it alone.
IDLE_CPU_SHARE = 0.02


def _cpu_seconds(pid: int) -> float:
    """User + system CPU time so far of one process."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _answers(client: redis.Redis) -> bool:
    try:
        return bool(client.ping())
    except redis.ConnectionError:
        return False


def test_idle_clients_cost_the_embedded_server_almost_no_cpu():
    """Idle connections, a pattern subscription and a consumer's timed-out BRPOPs keep it under 2 % of a core."""
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "devstack.redis_server", str(port)],
        cwd=ROOT, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, start_new_session=True,
    )
    clients = [redis.Redis(host="127.0.0.1", port=port, socket_timeout=5) for _ in range(30)]
    try:
        wait_until(lambda: _answers(clients[0]), timeout=30)
        for client in clients:
            assert client.ping()
        # What every web process holds (services/platform/pubsub.py) and a Celery consumer does while no task comes.
        pubsub = clients[0].pubsub()
        pubsub.psubscribe("idle:events:*")
        consumer = clients[1]
        cpu_before, started_at = _cpu_seconds(server.pid), time.monotonic()
        for _ in range(4):
            assert consumer.brpop(["idle:queue"], timeout=1) is None
        share = (_cpu_seconds(server.pid) - cpu_before) / (time.monotonic() - started_at)
        assert share < IDLE_CPU_SHARE, f"the idle embedded server used {share:.1%} of a core"
        pubsub.close()
    finally:
        for client in clients:
            client.close()
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=10)
