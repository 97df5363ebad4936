"""Liveness tasks: a worker round trip for the health check, and beat's heartbeat."""

from __future__ import annotations

import socket
import time

from celery import shared_task

from services.platform import health
from services.platform.jobs import Job


@shared_task(name=Job.HEALTH_PING, acks_late=False, expires=30)
def ping(nonce: str = "") -> dict[str, object]:
    """Answer the readiness check's round trip through the broker."""
    return health.pong(nonce, worker=socket.gethostname())


@shared_task(name=Job.BEAT_HEARTBEAT, acks_late=False, expires=60, ignore_result=True)
def beat_heartbeat() -> float:
    """Record that beat is scheduling (and a worker is running what it schedules)."""
    now = time.time()
    health.record_beat(now)
    return now
