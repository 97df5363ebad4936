"""Gateway events held until applied, so that a task message lost with a killed worker is sent again.

A gateway event (a client's message, a session's status) is parked in Redis and handed to
``whatsapp.handle_event`` by its parcel id. Celery's Redis transport takes a task message off its
queue (BRPOP) before it records it as unacknowledged (HSET ``unacked``): a worker killed in between
loses the message, and ``task_acks_late`` cannot bring it back. So each event is also held in a
sorted set, scored by when it was last sent; the task releases it once its transaction committed,
and the beat sweep sends again every event held longer than ``LOST_AFTER_SECONDS``. An event applied twice
changes nothing: a client's message is stored once by its WhatsApp id, a status is dropped as a
duplicate by its event id.
"""

from __future__ import annotations

import time
from typing import Any, cast

from services.platform import parcels, runtime
from services.platform.jobs import LOST_AFTER_SECONDS

SWEEP_LIMIT = 1000


def _key() -> str:
    return runtime.settings().key("whatsapp", "held_events")


def hold(event: dict[str, Any]) -> str:
    """Park ``event`` and hold it until released; the parcel id its task takes."""
    parcel_id = parcels.park(event)
    runtime.redis().zadd(_key(), {parcel_id: time.time()})
    return parcel_id


def release(parcel_id: str) -> None:
    """The event under ``parcel_id`` is applied (or gone): the sweep forgets it."""
    runtime.redis().zrem(_key(), parcel_id)


def overdue(now: float | None = None) -> list[str]:
    """The parcel ids of events held longer than ``LOST_AFTER_SECONDS`` (at most ``SWEEP_LIMIT``), each held
    again from ``now`` so that it is sent once a period, not at every sweep."""
    redis, now = runtime.redis(), time.time() if now is None else now
    found = cast("list[bytes]", redis.zrangebyscore(_key(), "-inf", now - LOST_AFTER_SECONDS, start=0, num=SWEEP_LIMIT))
    if not found:
        return []
    pipe = redis.pipeline(transaction=False)
    for parcel_id in found:
        pipe.zadd(_key(), {parcel_id: now}, xx=True, ch=True)  # XX: one released meanwhile stays released
    return [parcel_id.decode() for parcel_id, changed in zip(found, pipe.execute(), strict=True) if changed]


def held() -> int:
    """How many events are held (sent, not yet applied)."""
    return cast(int, runtime.redis().zcard(_key()))
