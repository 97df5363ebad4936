"""Background jobs by name: the one registry of task names, and the one way to enqueue them.

Services enqueue by name (they never import ``tasks``); the task modules register their functions
under these names, and a test checks that the worker knows every one.
"""

from __future__ import annotations

import logging
from enum import StrEnum
from typing import TYPE_CHECKING, Any

from services.platform import runtime
from services.platform.transactions import on_commit

if TYPE_CHECKING:
    from celery.result import AsyncResult

log = logging.getLogger(__name__)

# A task whose work is stored but which has not run this long after it was due is taken for lost (a
# worker killed as it took the message) and sent again by a sweep; one that was only late runs twice,
# harmlessly. Messaging has its own lease for this (MESSAGING_SENDING_LEASE_SECONDS).
LOST_AFTER_SECONDS = 60.0


class Job(StrEnum):
    """Every task name the service sends or schedules."""

    HEALTH_PING = "health.ping"
    BEAT_HEARTBEAT = "health.beat_heartbeat"
    WEBHOOKS_PROCESS = "webhooks.process"
    WEBHOOKS_PROCESS_BATCH = "webhooks.process_batch"
    WEBHOOKS_SWEEP = "webhooks.sweep"
    WEBHOOKS_PRUNE_REJECTED = "webhooks.prune_rejected"
    YCLIENTS_SEND_CALLBACK = "yclients.send_callback"
    YCLIENTS_CALLBACKS_SWEEP = "yclients.callbacks_sweep"
    WHATSAPP_START_SESSION = "whatsapp.start_session"
    WHATSAPP_HANDLE_EVENT = "whatsapp.handle_event"
    WHATSAPP_APPLY_RECEIPTS = "whatsapp.apply_receipts"
    WHATSAPP_EVENTS_SWEEP = "whatsapp.events_sweep"
    WHATSAPP_RENDER_QR = "whatsapp.render_qr"
    WHATSAPP_PAIRING_CODE = "whatsapp.pairing_code"
    WHATSAPP_RECONNECT = "whatsapp.reconnect"
    WHATSAPP_LOGOUT = "whatsapp.logout"
    WHATSAPP_STOP_SESSION = "whatsapp.stop_session"
    WHATSAPP_END_ATTEMPT = "whatsapp.end_attempt"
    WHATSAPP_CONFIRM_DISCONNECT = "whatsapp.confirm_disconnect"
    WHATSAPP_RECONCILE = "whatsapp.reconcile"
    WHATSAPP_RECONCILE_SWEEP = "whatsapp.reconcile_sweep"
    WHATSAPP_SIMULATOR_ROTATE_QR = "whatsapp.simulator_rotate_qr"
    WHATSAPP_SIMULATOR_ACK = "whatsapp.simulator_ack"
    YCLIENTS_FETCH_COMPANY = "yclients.fetch_company"
    MESSAGING_TICK = "messaging.tick"
    MESSAGING_DISPATCH = "messaging.dispatch"
    MESSAGING_DELIVER = "messaging.deliver"
    MESSAGING_WRITE_ATTENDANCE = "messaging.write_attendance"
    MESSAGING_REPLAN = "messaging.replan"


def enqueue(
    name: Job | str,
    *args: Any,
    after_commit: bool = True,
    countdown: float | None = None,
    fail_fast: bool = False,
) -> AsyncResult | None:
    """Send task ``name`` with ``args``: once the current transaction commits (the default), or now.

    ``fail_fast`` gives up at once on a broken broker instead of retrying the connection: for
    callers whose work is already stored and swept up later (webhooks), or that must roll back.
    Sent now, the result handle is returned (None when deferred to the commit).
    """
    job = Job(name)
    options: dict[str, Any] = {"args": list(args), "countdown": countdown}
    if fail_fast:
        options.update(retry=False, ignore_result=True)
    celery = runtime.celery()

    def send() -> AsyncResult:
        return celery.send_task(job.value, **options)

    if after_commit:
        on_commit(send)
        return None
    return send()


def waiting(name: Job | str) -> int | None:
    """How many task messages wait in the queue task ``name`` is routed to; None when the broker cannot say."""
    celery = runtime.celery()
    queue = celery.amqp.router.route({}, Job(name).value)["queue"].name
    try:
        with celery.connection_for_read() as connection:
            # Not passive: kombu's Redis transport calls an empty queue (no list key) one not declared.
            return int(connection.default_channel.queue_declare(queue=queue).message_count)
    except Exception as exc:
        log.warning("the length of queue %s is unknown (%s)", queue, exc)
        return None


def try_enqueue(name: Job | str, *args: Any, countdown: float | None = None) -> bool:
    """Send now, failing fast; False (logged) when the broker is unreachable. For work that is stored
    and picked up by a sweep anyway, so a lost message only delays it."""
    try:
        enqueue(name, *args, after_commit=False, countdown=countdown, fail_fast=True)
    except Exception as exc:
        log.warning("%s not enqueued (%s); the sweep will pick it up", name, exc)
        return False
    return True
