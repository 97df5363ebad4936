"""The simulated phones confirm our messages a moment after each send, all that are due by one timer."""

from __future__ import annotations

import time
from typing import Any

import redis

from integrations.whatsapp import SimulatorGateway, SimulatorTimings
from integrations.whatsapp.simulator import ACK_TASK, DEVICE_ACK_AFTER
from tests.support import wait_until


def test_the_confirmations_due_are_delivered_together_once_each(backends):
    timers: list[tuple[str, list[Any], float]] = []
    events: list[dict[str, Any]] = []
    with redis.Redis.from_url(backends.redis_url) as client:
        prefix = f"{backends.namespace}-acks"
        sim = SimulatorGateway(client, prefix, SimulatorTimings(60, 20, 6),
                               lambda name, args, seconds: timers.append((name, args, seconds)), events.append)
        try:
            sim.start("company-1")
            sim.scan("company-1", "79990000001")
            sim.start("company-1")
            timers.clear()
            def acks() -> list[dict[str, Any]]:
                return [e["payload"] for e in events if e["event"] == "message.ack"]

            sent = [sim.send_text("company-1", "79001112233", f"Текст {n}") for n in range(3)]
            assert timers == [(ACK_TASK, [], DEVICE_ACK_AFTER)]  # one timer for all three
            assert sim.acks_due() == 0 and acks() == []
            assert timers[-1][0] == ACK_TASK and 0 < timers[-1][2] <= DEVICE_ACK_AFTER  # set again for them
            started = time.monotonic()
            wait_until(lambda: sim.acks_due() and len(acks()) == 3, timeout=5, interval=0.05)
            assert time.monotonic() - started >= DEVICE_ACK_AFTER * 0.9 and sim.acks_due() == 0
            assert [a["id"] for a in acks()] == sent and {a["ack"] for a in acks()} == {2}
        finally:
            for key in client.scan_iter(f"{prefix}*", count=1000):
                client.delete(key)
