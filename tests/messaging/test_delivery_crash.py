"""A worker killed while a message is being sent: the text is never sent a second time.

Its own module: the stack here must be the only one whose beat ticks over the shared tables.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta

import pytest

from models import MessageState
from services.platform import clock
from tests.messaging.test_delivery import FAST, NOW, _connected, _messages, _of, _record, _texts, _webhook, slow_tick
from tests.support import wait_until
from tests.whatsapp_stack import Stack, start_stack


@pytest.fixture
def slow_stack(make_app, backends, service_env, run_dir) -> Iterator[Stack]:
    """The gateway takes 4 s to answer a send; a send handed but unanswered for 3 s is past its lease."""
    started = start_stack(make_app, backends, service_env, run_dir, beat=True, SIMULATOR_SEND_SECONDS="4",
                          MESSAGING_SENDING_LEASE_SECONDS="3", **FAST)
    with started.at(NOW):
        yield started
    started.stop()


def test_a_worker_killed_mid_send_sends_no_duplicate(slow_stack):
    made = _connected(slow_stack)
    _webhook(slow_stack, made, _record(made.salon_id, 708, "2026-09-18T12:00:00+03:00"))

    def handed() -> bool:
        found = _of(made.id, "booking_created")
        return bool(found) and found[0].handed_at is not None

    try:
        wait_until(handed, timeout=20)
    except AssertionError:
        log = [line for line in slow_stack.processes[0].output().splitlines() if "messaging.tick" not in line]
        raise AssertionError(repr([(m.kind, m.state, m.due_at, m.reason) for m in _messages(made.id)])
                             + "\n".join(log[-60:])) from None
    wait_until(lambda: len(_texts(made.id)) == 1, timeout=5)  # the text reached WhatsApp; no answer yet
    slow_stack.restart_worker(kill=True)  # the deliver task is redelivered to the new worker
    wait_until(lambda: _of(made.id, "booking_created")[0].state == MessageState.FAILED, timeout=30)
    assert "outcome unknown" in (_of(made.id, "booking_created")[0].reason or "")
    clock.set_test_time(NOW + timedelta(minutes=1))
    slow_tick(slow_stack)
    assert len(_texts(made.id)) == 1
