"""Third parties we cannot reach right now (the WhatsApp gateway, YClients), as every process sees them.

A call that finds a service unreachable (no answer, or a 5xx) reports it; the next call that gets
through clears it. The record lives in Redis, shared by web and workers: salons' status and
``company show`` list the outage while it lasts, and callers that can wait (the messaging
dispatcher) probe the service with backoff instead of hammering it. A Redis that is itself away
only loses this view — it never fails the call being observed.
"""

from __future__ import annotations

import logging
import time
from datetime import UTC, datetime
from typing import Any, cast

from redis.exceptions import RedisError

from services.platform import runtime
from services.platform.backoff import backoff
from services.platform.dates import iso

log = logging.getLogger(__name__)

WHATSAPP_GATEWAY = "whatsapp_gateway"
YCLIENTS = "yclients"
SERVICES = (WHATSAPP_GATEWAY, YCLIENTS)
# Probes of a service that is down: 1–2 s, 2–4 s … at most a minute apart.
PROBE_BASE_SECONDS, PROBE_CAP_SECONDS = 2.0, 60.0
# A record nobody refreshed for this long is forgotten (a process died between failure and success).
FORGET_AFTER_SECONDS = 24 * 3600


def _key(service: str) -> str:
    return runtime.settings().key("outage", service)


def failed(service: str, error: str) -> None:
    """``service`` could not be reached just now (``error`` says how)."""
    now = time.time()
    try:
        with runtime.redis().pipeline() as pipe:
            pipe.hsetnx(_key(service), "since", str(now))
            pipe.hset(_key(service), mapping={"error": error[:200], "last_at": now})
            pipe.hincrby(_key(service), "failures", 1)
            pipe.expire(_key(service), FORGET_AFTER_SECONDS)
            pipe.execute()
    except RedisError as exc:
        log.warning("outage of %s not recorded (Redis: %s)", service, exc)


def recovered(service: str) -> None:
    """A call to ``service`` got through: the outage, if any, is over."""
    try:
        if runtime.redis().delete(_key(service)):
            log.info("%s is reachable again", service)
    except RedisError as exc:
        log.warning("end of the outage of %s not recorded (Redis: %s)", service, exc)


def _read(service: str) -> dict[str, str]:
    try:
        raw = cast(dict[bytes | str, bytes | str], runtime.redis().hgetall(_key(service)))
    except RedisError:
        return {}
    return {k.decode() if isinstance(k, bytes) else k: v.decode() if isinstance(v, bytes) else v
            for k, v in raw.items()}


def probe_in(service: str) -> float:
    """Seconds until ``service`` should be tried again (0: it is up, or a probe is due)."""
    record = _read(service)
    if not record:
        return 0.0
    wait = backoff(int(record.get("failures", 1)), PROBE_BASE_SECONDS, PROBE_CAP_SECONDS)
    return max(0.0, float(record.get("last_at", 0)) + wait - time.time())


def current() -> list[dict[str, Any]]:
    """Every outage that lasts now: service, since when, the last error and how many calls failed."""
    found = []
    for service in SERVICES:
        record = _read(service)
        if record:
            found.append({"service": service, "since": iso(datetime.fromtimestamp(float(record.get("since", 0)), UTC)),
                          "error": record.get("error"), "failures": int(record.get("failures", 0))})
    return found
