"""Prometheus metrics of the service (prometheus-client; multiprocess mode under gunicorn/Celery).

Every process imports the same objects; with ``PROMETHEUS_MULTIPROC_DIR`` set, values are written
to that folder and ``/marketplace/metrics`` aggregates them across processes. The folder may be
shared by several containers, so each process's files are named by host name and pid.
"""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Iterator
from datetime import datetime

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
    values,
)
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from sqlalchemy import func, select

from models import Message, MessageState, WebhookEvent, db, utcnow
from models.webhook_event import EventStatus
from services.webhooks import rejections


def multiprocess_dir() -> str | None:
    """The folder shared by this deployment's processes, or None for a single in-memory registry."""
    return os.environ.get("PROMETHEUS_MULTIPROC_DIR") or None


def process_identifier() -> str:
    """The name of this process's value files: unique across containers sharing the folder."""
    return f"{socket.gethostname()}-{os.getpid()}"


if multiprocess_dir():
    os.makedirs(multiprocess_dir() or "", exist_ok=True)
    values.ValueClass = values.MultiProcessValue(process_identifier=process_identifier)

HTTP_REQUESTS = Counter(
    "ycwa_http_requests_total", "HTTP requests by endpoint, method and status", ["endpoint", "method", "status"]
)
HTTP_LATENCY = Histogram(
    "ycwa_http_request_duration_seconds",
    "HTTP request latency by endpoint",
    ["endpoint", "method"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
WEBHOOKS_RECEIVED = Counter(
    "ycwa_webhooks_received_total",
    "Webhook deliveries by source and outcome (accepted, duplicate, rejected, spooled, store_failed)",
    ["source", "outcome"],
)
WEBHOOK_SPOOL_DRAINED = Counter(
    "ycwa_webhook_spool_drained_total", "Spooled webhook deliveries moved into the inbox, by source and outcome",
    ["source", "outcome"],
)
TASKS = Counter(
    "ycwa_tasks_total", "Celery task runs by task and outcome (success, retry, failure)", ["task", "outcome"]
)
TASK_DURATION = Histogram("ycwa_task_duration_seconds", "Celery task run time by task", ["task"])
WEBSOCKET_CONNECTIONS = Gauge(
    "ycwa_websocket_connections", "Open WebSocket connections", multiprocess_mode="livesum"
)
QR_CODES_ISSUED = Counter("ycwa_qr_codes_issued_total", "WhatsApp QR codes issued to connect pages")
PAIRING_CODES_ISSUED = Counter("ycwa_pairing_codes_issued_total", "WhatsApp pairing codes issued")
CALLBACKS = Counter(
    "ycwa_callbacks_total", "Activation callbacks to YClients by outcome (sent, rejected, retrying, dead)",
    ["outcome"],
)
MESSAGES = Counter(
    "ycwa_messages_total", "Messages to salons' clients by kind and outcome (sent, delivered, read, failed, "
    "skipped, expired)", ["kind", "outcome"],
)
PACING_WAITS = Counter(
    "ycwa_messaging_pacing_waits_total", "Sends put off because a number's pacer (gap or daily cap) said wait"
)


class InboxBacklogCollector(Collector):
    """Counts ``webhook_events`` by status at scrape time (needs an app context)."""

    PENDING = (EventStatus.RECEIVED, EventStatus.PROCESSING, EventStatus.FAILED)

    def collect(self) -> Iterator[Metric]:
        counts = GaugeMetricFamily(
            "ycwa_webhook_inbox_events", "Webhook inbox events by status, counted at scrape time", labels=["status"]
        )
        oldest = GaugeMetricFamily(
            "ycwa_webhook_inbox_oldest_age_seconds",
            "Age of the oldest inbox event still waiting in each unfinished status",
            labels=["status"],
        )
        rows = db.session.execute(
            select(WebhookEvent.status, func.count(), func.min(WebhookEvent.received_at)).group_by(WebhookEvent.status)
        ).all()
        db.session.rollback()
        by_status: dict[str, tuple[int, datetime | None]] = {row[0]: (int(row[1]), row[2]) for row in rows}
        now = utcnow()
        for status in sorted(set(EventStatus.ALL) | set(by_status)):
            count, first = by_status.get(status, (0, None))
            counts.add_metric([status], count)
            if status in self.PENDING:
                oldest.add_metric([status], _age_seconds(now, first))
        yield counts
        yield oldest


class MessageQueueCollector(Collector):
    """Outbound messages waiting or in flight, by state, and the age of the oldest (needs an app context)."""

    STATES = (MessageState.PLANNED, MessageState.QUEUED, MessageState.SENDING)

    def collect(self) -> Iterator[Metric]:
        depth = GaugeMetricFamily("ycwa_messages_queue", "Outbound messages by state, counted at scrape time",
                                  labels=["state"])
        oldest = GaugeMetricFamily(
            "ycwa_messages_oldest_due_age_seconds",
            "How long the oldest due message in each waiting state has been due (0 when none)", labels=["state"],
        )
        now = utcnow()
        rows = db.session.execute(
            select(Message.state, func.count(), func.min(Message.due_at))
            .where(Message.state.in_(self.STATES)).group_by(Message.state)
        ).all()
        db.session.rollback()
        found = {row[0]: (int(row[1]), row[2]) for row in rows}
        for state in self.STATES:
            count, first = found.get(state, (0, None))
            depth.add_metric([state], count)
            oldest.add_metric([state], _age_seconds(now, first))
        yield depth
        yield oldest


class RejectedSendersCollector(Collector):
    """Who sends rejected webhook deliveries this hour: how many IPs, and the top few (needs an app context).

    The IP is a label only on the top ``TOP_SENDERS`` series, so the series count stays bounded.
    """

    def collect(self) -> Iterator[Metric]:
        senders = GaugeMetricFamily(
            "ycwa_webhook_rejected_senders", "Client IPs that sent rejected webhook deliveries in the current hour"
        )
        top = GaugeMetricFamily(
            "ycwa_webhook_rejected_top_senders",
            "Rejected webhook deliveries in the current hour from the IPs that sent the most",
            labels=["rank", "ip"],
        )
        try:
            distinct, leaders = rejections.top_senders()
        except Exception:  # Redis down: the scrape still answers, without these series
            return
        senders.add_metric([], distinct)
        for rank, (ip, count) in enumerate(leaders, start=1):
            top.add_metric([str(rank), ip], count)
        yield senders
        yield top


class SpoolCollector(Collector):
    """What waits in this host's webhook spool for the database (needs an app context; 0s when empty)."""

    def collect(self) -> Iterator[Metric]:
        from flask import current_app

        from services.webhooks.writer import INBOX_WRITER  # the writer counts with this module's metrics

        writer = current_app.extensions.get(INBOX_WRITER)
        if writer is None:
            return
        try:
            stats = writer.spool.stats()
        except Exception:  # an unreadable spool file: the scrape still answers, without these series
            return
        yield GaugeMetricFamily("ycwa_webhook_spool_deliveries", "Webhook deliveries waiting in the local spool",
                                value=stats.deliveries)
        yield GaugeMetricFamily("ycwa_webhook_spool_bytes", "Size of the webhook spool's rows", value=stats.bytes)
        age = 0.0 if stats.oldest_received_at is None else max(0.0, time.time() - stats.oldest_received_at)
        yield GaugeMetricFamily("ycwa_webhook_spool_oldest_age_seconds",
                                "Age of the oldest delivery in the webhook spool (0 when empty)", value=age)


def _age_seconds(now: datetime, first: datetime | None) -> float:
    if first is None:
        return 0.0
    if first.tzinfo is None:  # SQLite aggregates come back as naive UTC
        first = first.replace(tzinfo=now.tzinfo)
    return max(0.0, (now - first).total_seconds())


class _ThisProcess(Collector):
    """The in-memory default registry, when there is no multiprocess folder."""

    def collect(self) -> Iterator[Metric]:
        yield from REGISTRY.collect()


def exposition() -> tuple[bytes, str]:
    """Every process's metrics and the inbox backlog in Prometheus text format, with its content type."""
    registry = CollectorRegistry()
    folder = multiprocess_dir()
    if folder:
        multiprocess.MultiProcessCollector(registry, path=folder)
    else:
        registry.register(_ThisProcess())
    registry.register(InboxBacklogCollector())
    registry.register(MessageQueueCollector())
    registry.register(RejectedSendersCollector())
    registry.register(SpoolCollector())
    return generate_latest(registry), CONTENT_TYPE_LATEST


def mark_process_dead(pid: int) -> None:
    """Drop the live-gauge files of a process that exited (gunicorn worker, Celery pool child)."""
    if multiprocess_dir():
        multiprocess.mark_process_dead(f"{socket.gethostname()}-{pid}")
