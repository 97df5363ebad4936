"""Group commit for the webhook hot path: concurrent deliveries share one INSERT and one COMMIT.

A request thread hands its delivery to the process's writer thread and waits for the commit, so a
delivery is acknowledged only once it is durable. The writer takes whatever has queued up while the
previous batch was committing (one delivery when idle, dozens under load), then makes two round
trips for the whole batch on its autocommit connection: one SELECT of the companies named and one
multi-row ``INSERT … ON CONFLICT (dedupe_key) DO NOTHING RETURNING dedupe_key, id``, committed as
it runs. A second thread sends one ``webhooks.process_batch`` message for the events the batches of
the last 200 ms accepted. If the batch statement fails (a row the database refuses), the batch is
written again one delivery at a time so one bad delivery cannot take the others with it.

When the database cannot be reached the batch goes to the local spool (``services.webhooks.spool``)
and is acknowledged from there; a third thread drains the spool into the inbox once the database is
back. While the spool holds deliveries, new ones queue behind them in it, so the inbox receives them
in the order they arrived. A delivery neither stored nor spooled (the spool full) counts as
``store_failed`` and the sender is told to retry.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from datetime import UTC, datetime
from typing import Any

from flask import Flask
from prometheus_client import Counter
from sqlalchemy import Connection

from models import EventSource, EventStatus, db, utcnow
from services.access import webhook_secrets
from services.platform.jobs import Job, try_enqueue
from services.platform.metrics import WEBHOOK_SPOOL_DRAINED, WEBHOOKS_RECEIVED
from services.webhooks.inbox_rows import OwnConnection, Pending, companies_named, insert_rows, row_values
from services.webhooks.ingest import Outcome, Received, database_unavailable, store
from services.webhooks.spool import Spool, Spooled, spool_path

log = logging.getLogger(__name__)

MAX_BATCH = 500
# Longer gathering means fewer, larger process_batch tasks (less worker CPU per event) and later
# processing; the trade-off is measured in docs/BENCHMARKS.md ("Figures behind the code").
ENQUEUE_COALESCE_SECONDS = 0.2
# The drainer looks at the spool this often when it has nothing to do (another process of the host may
# have left deliveries in it), and retries this often while the database is still away.
SPOOL_IDLE_CHECK_SECONDS = 30.0
SPOOL_RETRY_SECONDS = (0.5, 5.0)



def _alive(thread: threading.Thread | None) -> bool:
    return thread is not None and thread.is_alive()


INBOX_WRITER = "inbox_writer"


def init_app(app: Flask) -> None:
    """Give ``app`` its writer; with group commit off (or on SQLite) each request stores its own delivery."""
    settings = app.config["SETTINGS"]
    group_commit = settings.webhook_group_commit
    if group_commit is None:
        group_commit = not settings.database_url.startswith("sqlite")
    spool = Spool(spool_path(settings.webhook_spool_dir, settings.database_url), settings.webhook_spool_max_bytes)
    app.extensions[INBOX_WRITER] = InboxWriter(app, group_commit=group_commit, spool=spool)


class InboxWriter:
    """One per web process: a thread that stores deliveries in batches on behalf of request threads."""

    def __init__(self, app: Flask, ack_timeout: float = 10.0, group_commit: bool = True,
                 spool: Spool | None = None) -> None:
        self._app = app
        self._ack_timeout = ack_timeout
        self.group_commit = group_commit
        settings = app.config["SETTINGS"]
        self.spool = spool or Spool(spool_path(settings.webhook_spool_dir, settings.database_url),
                                    settings.webhook_spool_max_bytes)
        self._queue: queue.SimpleQueue[Pending] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._enqueuer: threading.Thread | None = None
        self._drainer: threading.Thread | None = None
        self._conn = OwnConnection()
        self._drain_conn = OwnConnection()
        self._accepted: queue.SimpleQueue[list[int]] = queue.SimpleQueue()
        # Set while the spool may hold deliveries (new ones then queue behind them); the wake-up of the drainer.
        self._backlog = threading.Event()
        self._drain_wake = threading.Event()

    def start(self) -> None:
        """Start the drainer at process start, so a restarted process drains what it left (gunicorn's hook)."""
        self._ensure_drainer()

    def submit(self, company_id: int, secret: str | None, body: bytes | None, request_id: str | None) -> Received:
        """Store one delivery (waiting for its commit); a delivery not stored in time counts as failed."""
        item = Pending(company_id, secret, body, request_id)
        self._ensure_drainer()
        if not self.group_commit:
            self._write_one_by_one([item])
            return item.result
        self._ensure_running()
        self._queue.put(item)
        if not item.done.wait(self._ack_timeout):
            log.error("webhook delivery for company %s not stored within %.0fs", company_id, self._ack_timeout)
            WEBHOOKS_RECEIVED.labels(EventSource.YCLIENTS, Outcome.STORE_FAILED).inc()
        return item.result

    def _ensure_running(self) -> None:
        """Start the writer and the enqueuer threads, each only if it is not already running."""
        if _alive(self._thread) and _alive(self._enqueuer):
            return
        with self._lock:
            if not _alive(self._thread):
                self._thread = threading.Thread(target=self._run, name="inbox-writer", daemon=True)
                self._thread.start()
            if not _alive(self._enqueuer):
                self._enqueuer = threading.Thread(target=self._run_enqueuer, name="inbox-enqueuer", daemon=True)
                self._enqueuer.start()

    def _ensure_drainer(self) -> None:
        if _alive(self._drainer):
            return
        with self._lock:
            if not _alive(self._drainer):
                if not self.spool.is_empty():  # left by an earlier process: they go first
                    self._backlog.set()
                self._drainer = threading.Thread(target=self._run_drainer, name="inbox-spool-drainer", daemon=True)
                self._drainer.start()

    def _run_enqueuer(self) -> None:
        """Send ``webhooks.process_batch`` for what the writer stored, merging batches that queued up."""
        while True:
            event_ids = self._accepted.get()
            # A short wait gathers the batches of the next few commits into one message: publishing
            # costs far more than the ids it carries, and processing is not what the sender waits for.
            time.sleep(ENQUEUE_COALESCE_SECONDS)
            while len(event_ids) < MAX_BATCH:
                try:
                    event_ids = event_ids + self._accepted.get_nowait()
                except queue.Empty:
                    break
            with self._app.app_context():
                try_enqueue(Job.WEBHOOKS_PROCESS_BATCH, event_ids)

    def _run(self) -> None:
        while True:
            batch = [self._queue.get()]
            while len(batch) < MAX_BATCH:
                try:
                    batch.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            with self._app.app_context():
                accepted = self._store_batch(batch)
                # Stored (or spooled) and committed: acknowledge first, then enqueue (a lost enqueue is swept up).
                for item in batch:
                    item.done.set()
                if accepted:
                    self._accepted.put(accepted)

    def _store_batch(self, batch: list[Pending]) -> list[int]:
        """Store one batch: into the inbox, or the spool when the database is away or the spool holds older ones."""
        if self._backlog.is_set():
            self._spool(batch)
            return []
        try:
            return self._write(batch, self._conn.get())
        except Exception as exc:
            self._conn.reset()
            if database_unavailable(exc):
                log.warning("database unavailable, %s webhook deliveries go to the spool: %s", len(batch), exc)
                self._spool(batch)
                return []
            log.exception("webhook batch of %s could not be stored as one", len(batch))
            self._write_one_by_one(batch)
            return []

    def _spool(self, batch: list[Pending]) -> None:
        """Keep the batch in the spool (fsynced) and wake the drainer; ``store_failed`` when the spool cannot."""
        rows = [Spooled.new(item.company_id, webhook_secrets.presented_digest(item.secret), item.body,
                            item.request_id) for item in batch]
        try:
            self.spool.put(rows)
        except Exception:
            log.exception("%s webhook deliveries could be neither stored nor spooled", len(batch))
            for item in batch:
                item.result = Received(Outcome.STORE_FAILED)
            WEBHOOKS_RECEIVED.labels(EventSource.YCLIENTS, Outcome.STORE_FAILED).inc(len(batch))
            return
        self._backlog.set()
        self._drain_wake.set()
        for item in batch:
            item.result = Received(Outcome.SPOOLED)
        WEBHOOKS_RECEIVED.labels(EventSource.YCLIENTS, Outcome.SPOOLED).inc(len(batch))

    def _run_drainer(self) -> None:
        """Move spooled deliveries into the inbox, oldest first, whenever there are any and the database answers."""
        delay = SPOOL_RETRY_SECONDS[0]
        while True:
            try:
                with self._app.app_context():
                    moved = self.spool.drain(self._store_spooled, MAX_BATCH, on_empty=self._backlog.clear)
            except Exception as exc:
                self._drain_conn.reset()
                if database_unavailable(exc):
                    log.info("webhook spool not drained yet, the database is unavailable: %s", exc)
                else:
                    log.exception("webhook spool could not be drained")
                time.sleep(delay)
                delay = min(delay * 2, SPOOL_RETRY_SECONDS[1])
                continue
            delay = SPOOL_RETRY_SECONDS[0]
            if moved:
                log.info("%s spooled webhook deliveries moved into the inbox", moved)
                continue
            self._drain_wake.wait(SPOOL_IDLE_CHECK_SECONDS)
            self._drain_wake.clear()

    def _store_spooled(self, rows: list[Spooled]) -> None:
        """Commit spooled deliveries to the inbox (raising leaves them in the spool), then enqueue them."""
        batch = [Pending(row.company_id, None, row.body, row.request_id, secret_digest=row.secret_digest,
                          received_at=datetime.fromtimestamp(row.received_at, UTC), spool_token=row.token)
                 for row in rows]
        try:
            accepted = self._write(batch, self._drain_conn.get(), counter=WEBHOOK_SPOOL_DRAINED)
        except Exception as exc:
            if database_unavailable(exc):
                raise
            # A row the database refuses must not hold the spool up: the others are written one by one.
            log.exception("spooled webhook batch of %s could not be stored as one", len(batch))
            self._drain_conn.reset()
            self._write_one_by_one(batch, counter=WEBHOOK_SPOOL_DRAINED, from_spool=True)
            return
        if accepted:
            self._ensure_running()
            self._accepted.put(accepted)

    def _write(self, batch: list[Pending], conn: Connection, counter: Counter = WEBHOOKS_RECEIVED) -> list[int]:
        companies = companies_named(batch, conn)
        now = utcnow()
        prepared = [(item, row_values(item, companies)) for item in batch]
        rows: dict[str, dict[str, Any]] = {}
        for item, values in prepared:
            rows.setdefault(values["dedupe_key"], {**values, "attempts": 0, "received_at": item.received_at or now})
        inserted = insert_rows(conn, list(rows.values()))

        accepted: list[int] = []
        for item, values in prepared:
            # The first delivery of a key inserted now owns the row; every other one is a duplicate.
            event_id = inserted.pop(values["dedupe_key"], None)
            if event_id is None:
                item.result = Received(Outcome.DUPLICATE)
            elif values["status"] == EventStatus.REJECTED:
                item.result = Received(Outcome.REJECTED, event_id, values["reject_reason"])
            else:
                item.result = Received(Outcome.ACCEPTED, event_id)
                accepted.append(event_id)
            counter.labels(values["source"], item.result.outcome).inc()
        return accepted

    def _write_one_by_one(self, batch: list[Pending], counter: Counter = WEBHOOKS_RECEIVED,
                          from_spool: bool = False) -> None:
        """Store each delivery in a transaction of its own; to the spool instead when it holds older ones
        or the database cannot be reached. Deliveries ``from_spool`` raise instead, and stay in the spool."""
        if not from_spool and self._backlog.is_set():
            self._spool(batch)
            return
        try:
            companies = companies_named(batch, None)
            for item in batch:
                values = row_values(item, companies)
                if item.received_at is not None:
                    values["received_at"] = item.received_at
                item.result = store(values, enqueue_after=True, counter=counter, raise_unavailable=True)
        except Exception as exc:
            db.session.rollback()
            if from_spool:
                raise
            pending = [item for item in batch if item.result.outcome == Outcome.STORE_FAILED]
            if database_unavailable(exc):
                log.warning("database unavailable, %s webhook deliveries go to the spool: %s", len(pending), exc)
                self._spool(pending)
            else:
                log.exception("company lookup failed for a webhook batch")
                counter.labels(EventSource.YCLIENTS, Outcome.STORE_FAILED).inc(len(pending))
        finally:
            db.session.remove()

