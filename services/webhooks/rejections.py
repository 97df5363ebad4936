"""Rejected webhook deliveries: counted per client IP, pruned after their retention.

Rejected deliveries are unauthenticated writes into our database, so they are kept compact (an
excerpt and a reason), removed after ``WEBHOOK_REJECTED_RETENTION_HOURS`` by a beat task, and
counted per sending IP in Redis — a sorted set per hour, read at scrape time — so the metrics can
name the top senders without a label per IP. Only rejected deliveries pay for the count; accepted
ones, the measured fast path, never touch Redis for it.
"""

from __future__ import annotations

import logging
import time
from datetime import timedelta

from sqlalchemy import delete, select

from models import EventStatus, WebhookEvent, db, utcnow
from services.platform import runtime

log = logging.getLogger(__name__)

WINDOW_SECONDS = 3600
TOP_SENDERS = 5
PRUNE_BATCH = 5000


def _window_key(now: float | None = None) -> str:
    window = int((time.time() if now is None else now) // WINDOW_SECONDS)
    return runtime.settings().key("webhooks", "rejected", "senders", window)


def count_sender(ip: str) -> None:
    """Count one rejected delivery from ``ip`` in the current hour (a Redis outage only loses the count)."""
    key = _window_key()
    try:
        pipe = runtime.redis().pipeline(transaction=False)
        pipe.zincrby(key, 1, ip)
        pipe.expire(key, 2 * WINDOW_SECONDS)
        pipe.execute()
    except Exception as exc:
        log.warning("rejected delivery from %s not counted: %s", ip, exc)


def top_senders(limit: int = TOP_SENDERS) -> tuple[int, list[tuple[str, int]]]:
    """How many IPs sent rejected deliveries this hour, and the ``limit`` who sent the most."""
    client, key = runtime.redis(), _window_key()
    found: list[tuple[bytes, float]] = client.zrevrange(key, 0, limit - 1, withscores=True)  # type: ignore[assignment]
    distinct: int = client.zcard(key)  # type: ignore[assignment]
    return distinct, [(ip.decode(), int(score)) for ip, score in found]


def prune(retention_hours: float | None = None) -> int:
    """Delete rejected deliveries older than the retention, in batches; how many went."""
    hours = runtime.settings().webhook_rejected_retention_hours if retention_hours is None else retention_hours
    cutoff = utcnow() - timedelta(hours=hours)
    removed = 0
    while True:
        ids = select(WebhookEvent.id).where(
            WebhookEvent.status == EventStatus.REJECTED, WebhookEvent.received_at < cutoff
        ).limit(PRUNE_BATCH)
        result = db.session.execute(delete(WebhookEvent).where(WebhookEvent.id.in_(ids.scalar_subquery())))
        db.session.commit()
        batch = int(result.rowcount or 0)  # type: ignore[attr-defined]
        removed += batch
        if batch < PRUNE_BATCH:
            return removed
