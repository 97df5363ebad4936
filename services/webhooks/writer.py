"""Group commit for the webhook hot path: concurrent deliveries share one INSERT and one COMMIT.

A request thread hands its delivery to the process's writer thread and waits for the commit, so a
delivery is acknowledged only once it is durable. The writer takes whatever has queued up while the
previous batch was committing (one delivery when idle, dozens under load), then makes two round
trips for the whole batch on its autocommit connection: one SELECT of the companies named and one
multi-row ``INSERT … ON CONFLICT (dedupe_key) DO NOTHING RETURNING dedupe_key, id``, committed as
it runs. A second thread sends one ``webhooks.process_batch`` message for the events the batches of
the last 200 ms accepted. If the batch statement fails (a row the database refuses), the batch is
written again one delivery at a time so one bad delivery cannot take the others with it.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from flask import Flask
from psycopg2.extras import Json, execute_values
from sqlalchemy import Connection, select
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from models import Company, EventSource, EventStatus, db, utcnow
from services.access import webhook_secrets
from services.platform.ids import MAX_ID
from services.platform.jobs import Job, try_enqueue
from services.platform.metrics import WEBHOOKS_RECEIVED
from services.webhooks import EVENTS
from services.webhooks.ingest import Outcome, Received, rejected_values, store
from services.webhooks.parsing import Malformed, excerpt, parse_delivery

log = logging.getLogger(__name__)

MAX_BATCH = 500
# Longer gathering means fewer, larger process_batch tasks (less worker CPU per event) and later
# processing; the trade-off is measured in docs/BENCHMARKS.md ("Figures behind the code").
ENQUEUE_COALESCE_SECONDS = 0.2
# The inbox columns the writer fills, in the order of the PostgreSQL statement's rows.
COLUMNS = ("company_id", "source", "dedupe_key", "type", "payload", "status", "reject_reason", "request_id",
           "attempts", "received_at")
# On PostgreSQL the two statements of a batch go straight to psycopg2 (``execute_values`` builds the
# multi-row INSERT in C): SQLAlchemy's insertmanyvalues and result processing were most of a
# webhook's cost in the web process (docs/BENCHMARKS.md, "Figures behind the code").
PG_INSERT = (f"INSERT INTO {EVENTS.name} ({', '.join(COLUMNS)}) VALUES %s "
             "ON CONFLICT (dedupe_key) DO NOTHING RETURNING dedupe_key, id")
PG_COMPANIES = "SELECT id, salon_id, webhook_secret_generation FROM companies WHERE id = ANY(%s)"


@dataclass
class _Pending:
    company_id: int
    secret: str | None
    body: bytes | None
    request_id: str | None
    done: threading.Event = field(default_factory=threading.Event)
    result: Received = field(default_factory=lambda: Received(Outcome.STORE_FAILED))


@dataclass(frozen=True)
class _CompanyKey:
    id: int
    salon_id: int
    webhook_secret_generation: int | None


def _values(item: _Pending, companies: dict[int, _CompanyKey | None]) -> dict[str, Any]:
    """The inbox row of one delivery: accepted, or rejected with its reason."""
    company = companies.get(item.company_id)

    def rejected(reason: str, owner: int | None) -> dict[str, Any]:
        payload: dict[str, Any] = {"url_company_id": item.company_id}
        if item.body is not None:
            payload["excerpt"] = excerpt(item.body)
        return rejected_values(owner, EventSource.YCLIENTS, reason, payload, item.request_id)

    if company is None:
        return rejected("unknown company", None)
    if not webhook_secrets.verify_webhook_secret(company, item.secret):
        return rejected("invalid webhook secret", company.id)
    if item.body is None:
        return rejected("body too large", company.id)
    try:
        delivery = parse_delivery(company.id, company.salon_id, item.body)
    except Malformed as exc:
        return rejected(str(exc), company.id)
    return {
        "company_id": company.id,
        "source": delivery.source,
        "dedupe_key": delivery.dedupe_key,
        "type": delivery.type,
        "payload": delivery.payload,
        "status": EventStatus.RECEIVED,
        "reject_reason": None,
        "request_id": item.request_id,
    }


def _alive(thread: threading.Thread | None) -> bool:
    return thread is not None and thread.is_alive()


def _cursor(conn: Connection) -> Any:
    """A psycopg2 cursor on the connection's own DBAPI connection."""
    driver = conn.connection.driver_connection
    assert driver is not None
    return driver.cursor()


INBOX_WRITER = "inbox_writer"


def init_app(app: Flask) -> None:
    """Give ``app`` its writer; with group commit off (or on SQLite) each request stores its own delivery."""
    settings = app.config["SETTINGS"]
    group_commit = settings.webhook_group_commit
    if group_commit is None:
        group_commit = not settings.database_url.startswith("sqlite")
    app.extensions[INBOX_WRITER] = InboxWriter(app, group_commit=group_commit)


class InboxWriter:
    """One per web process: a thread that stores deliveries in batches on behalf of request threads."""

    def __init__(self, app: Flask, ack_timeout: float = 10.0, group_commit: bool = True) -> None:
        self._app = app
        self._ack_timeout = ack_timeout
        self.group_commit = group_commit
        self._queue: queue.SimpleQueue[_Pending] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._enqueuer: threading.Thread | None = None
        self._conn: Connection | None = None
        self._accepted: queue.SimpleQueue[list[int]] = queue.SimpleQueue()

    def submit(self, company_id: int, secret: str | None, body: bytes | None, request_id: str | None) -> Received:
        """Store one delivery (waiting for its commit); a delivery not stored in time counts as failed."""
        item = _Pending(company_id, secret, body, request_id)
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
                try:
                    accepted = self._write(batch)
                except Exception:
                    log.exception("webhook batch of %s could not be stored as one", len(batch))
                    self._reset_connection()
                    accepted = []
                    self._write_one_by_one(batch)
                # Stored and committed: acknowledge first, then enqueue (a lost enqueue is swept up).
                for item in batch:
                    item.done.set()
                if accepted:
                    self._accepted.put(accepted)

    def _connection(self) -> Connection:
        # One autocommit connection kept by the thread: a batch's INSERT is its own transaction, so
        # storing it is one round trip (no BEGIN, no COMMIT) and no pool checkout or ping per batch.
        if self._conn is None:
            self._conn = db.engine.connect().execution_options(isolation_level="AUTOCOMMIT")
        return self._conn

    def _reset_connection(self) -> None:
        if self._conn is not None:
            try:
                self._conn.close()
            except Exception:
                log.warning("closing the inbox writer's connection failed", exc_info=True)
            self._conn = None

    def _companies(self, batch: list[_Pending], conn: Connection | None) -> dict[int, _CompanyKey | None]:
        """The companies a batch names, read with one SELECT (never cached: revocation is immediate)."""
        wanted = {item.company_id for item in batch if 0 < item.company_id <= MAX_ID}
        if not wanted:
            return {}
        if conn is not None and conn.dialect.name == "postgresql":
            with _cursor(conn) as cursor:
                cursor.execute(PG_COMPANIES, (sorted(wanted),))
                return {row[0]: _CompanyKey(*row) for row in cursor.fetchall()}
        query = select(Company.id, Company.salon_id, Company.webhook_secret_generation).where(Company.id.in_(wanted))
        rows = conn.execute(query) if conn is not None else db.session.execute(query)
        return {row.id: _CompanyKey(row.id, row.salon_id, row.webhook_secret_generation) for row in rows}

    @staticmethod
    def _insert(conn: Connection, rows: list[dict[str, Any]]) -> dict[str, int]:
        """Insert the rows (one statement), skipping existing keys; the ids of those inserted, by key."""
        if conn.dialect.name == "postgresql":
            values = [tuple(Json(row[c]) if c == "payload" else row[c] for c in COLUMNS) for row in rows]
            with _cursor(conn) as cursor:
                return dict(execute_values(cursor, PG_INSERT, values, page_size=len(values), fetch=True))
        # executemany form: compiled once and cached, sent as one multi-row statement per page.
        statement = (
            sqlite_insert(EVENTS)
            .on_conflict_do_nothing(index_elements=["dedupe_key"])
            .returning(EVENTS.c.id, EVENTS.c.dedupe_key)
        )
        return {row.dedupe_key: row.id for row in conn.execute(statement, rows)}

    def _write(self, batch: list[_Pending]) -> list[int]:
        conn = self._connection()
        companies = self._companies(batch, conn)
        now = utcnow()
        prepared = [(item, _values(item, companies)) for item in batch]
        rows: dict[str, dict[str, Any]] = {}
        for _item, values in prepared:
            rows.setdefault(values["dedupe_key"], {**values, "attempts": 0, "received_at": now})
        inserted = self._insert(conn, list(rows.values()))

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
            WEBHOOKS_RECEIVED.labels(values["source"], item.result.outcome).inc()
        return accepted

    def _write_one_by_one(self, batch: list[_Pending]) -> None:
        companies: dict[int, _CompanyKey | None] = {}
        try:
            companies = self._companies(batch, None)
        except Exception:
            db.session.rollback()
            log.exception("company lookup failed for a webhook batch")
        for item in batch:
            item.result = store(_values(item, companies), enqueue_after=True)
        db.session.remove()

