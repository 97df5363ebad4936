"""Receipts of our messages (gateways' ``message.ack`` events) applied in batches, not a task each.

Every message sent earns one or more receipts (sent, delivered, read), so a task per receipt was a
good part of the worker's work per message. A receipt is appended to a Redis list instead (it names
the client's chat, so it never travels in task arguments), and the first one of a moment schedules
``whatsapp.apply_receipts`` ``DELAY`` seconds later. That task, one run at a time, applies the
list's head in one transaction and trims what it applied only after the commit: a crash leaves the
receipts for the next run (the beat sweep schedules one when a lost task left none), and a receipt
applied twice changes nothing (a message only moves on).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from contextlib import suppress
from typing import Any, cast

from redis.exceptions import LockError

from models import db
from services.platform import runtime
from services.platform.jobs import Job, enqueue

log = logging.getLogger(__name__)

KIND = "message.ack"
DELAY = 1.0
BATCH = 500
TTL_SECONDS = 24 * 3600
# A run killed while holding the lock holds the receipts back no longer than this (each batch renews it).
LOCK_SECONDS = 15.0

# Trim the batch a run applied and renew its lock, only while that run still holds the lock: a run that
# outlived its lock leaves the list to the one that took over, which began at the same head (trimming
# twice would drop receipts never applied).
_TRIM_WHILE_HOLDING = """
if redis.call('get', KEYS[1]) == ARGV[1] then
    redis.call('ltrim', KEYS[2], ARGV[2], -1)
    redis.call('pexpire', KEYS[1], ARGV[3])
    return 1
end
return 0
"""


def _key(*parts: str) -> str:
    return runtime.settings().key("whatsapp", "receipts", *parts)


def schedule() -> bool:
    """Run ``whatsapp.apply_receipts`` in ``DELAY`` seconds unless a run is already scheduled."""
    if not runtime.redis().set(_key("scheduled"), 1, nx=True, ex=int(DELAY) + 60):
        return False
    enqueue(Job.WHATSAPP_APPLY_RECEIPTS, after_commit=False, countdown=DELAY)
    return True


def resume() -> bool:
    """Schedule a run for receipts left waiting with none to come (its task lost with a killed worker)."""
    return bool(runtime.redis().llen(_key())) and schedule()


def add(event: dict[str, Any]) -> None:
    """Keep one ``message.ack`` event for the next batch."""
    pipe = runtime.redis().pipeline(transaction=False)
    pipe.rpush(_key(), json.dumps(event))
    pipe.expire(_key(), TTL_SECONDS)
    pipe.execute()
    schedule()


Handler = Callable[[dict[str, Any]], object]


def _apply(events: list[dict[str, Any]], handle_event: Handler) -> None:
    """Apply the events in one transaction; when one fails, each on its own, the failing ones logged and left."""
    try:
        for event in events:
            handle_event(event)
        db.session.commit()
        return
    except Exception:
        db.session.rollback()
    for event in events:
        try:
            handle_event(event)
            db.session.commit()
        except Exception:
            db.session.rollback()
            log.exception("a gateway receipt for company %s was not applied", event.get("company_id"))


def apply_waiting(handle_event: Handler) -> int:
    """Apply the receipts waiting with ``handle_event`` (a batch at a time, under a lock); how many."""
    redis = runtime.redis()
    redis.delete(_key("scheduled"))  # receipts added from now on schedule the next run
    lock = redis.lock(_key("lock"), timeout=LOCK_SECONDS)
    if not lock.acquire(blocking=False):
        schedule()  # the run holding the lock may have looked at the list before the latest receipts came
        return 0
    trim = redis.register_script(_TRIM_WHILE_HOLDING)
    applied = 0
    try:
        while raw := cast("list[bytes]", redis.lrange(_key(), 0, BATCH - 1)):
            _apply([json.loads(item) for item in raw], handle_event)
            if not trim(keys=[_key("lock"), _key()], args=[lock.local.token, len(raw), int(LOCK_SECONDS * 1000)]):
                log.warning("a receipts run outlived its lock after %s receipts; the run that took over goes on",
                            applied)
                break
            applied += len(raw)
    finally:
        with suppress(LockError):
            lock.release()
    return applied
