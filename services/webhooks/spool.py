"""The local spool: where a web process keeps the webhook deliveries its database cannot take.

YClients needs a 200 for every delivery, so a delivery acknowledged while PostgreSQL is unreachable
must be kept somewhere else until it is back. The spool is an SQLite file on the web process's own
disk (a volume in compose) in WAL mode with ``synchronous=FULL``: a delivery is acknowledged only
after its row is fsynced. Rows keep the delivery as it arrived (company id from the URL, body, request
id, arrival time) and, instead of the URL secret, a keyed digest of it
(``webhook_secrets.presented_digest``): the file never holds a working webhook URL, and the secret is
checked when the row is drained, against the company's secret of that moment.

``drain`` moves rows into the inbox in arrival order, holding the spool's write lock, and deletes
them only after the inbox has committed them; a process that dies in between leaves them for the
next drain, where the inbox's dedupe key makes them duplicates (a rejected one keeps the same key
too). Several processes of one host may share a file: SQLite's locking serialises them.

The spool is bounded (``WEBHOOK_SPOOL_MAX_BYTES``): a delivery that does not fit is refused.
"""

from __future__ import annotations

import hashlib
import logging
import sqlite3
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)

SCHEMA = """
CREATE TABLE IF NOT EXISTS deliveries (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    token TEXT NOT NULL UNIQUE,
    company_id INTEGER NOT NULL,
    secret_digest TEXT,
    body BLOB,
    request_id TEXT,
    received_at REAL NOT NULL
)
"""


def spool_path(folder: str, database_url: str) -> Path:
    """The spool file of one database: a spool is drained into the inbox it was kept for, never another."""
    name = hashlib.sha256(database_url.encode()).hexdigest()[:16]
    return Path(folder) / f"webhooks-{name}.sqlite3"


@dataclass(frozen=True)
class Spooled:
    """One delivery as the spool keeps it."""

    token: str
    company_id: int
    secret_digest: str | None
    body: bytes | None  # None: the body was over the size limit
    request_id: str | None
    received_at: float

    @classmethod
    def new(cls, company_id: int, digest: str | None, body: bytes | None, request_id: str | None) -> Spooled:
        return cls(uuid.uuid4().hex, company_id, digest, body, request_id, time.time())


@dataclass(frozen=True)
class SpoolStats:
    deliveries: int
    bytes: int
    oldest_received_at: float | None


class SpoolFull(Exception):
    """The spool is at ``WEBHOOK_SPOOL_MAX_BYTES``: the delivery is not kept."""


class Spool:
    """The spool file of one web process (one SQLite connection per thread that uses it)."""

    def __init__(self, path: Path, max_bytes: int) -> None:
        self.path = path
        self.max_bytes = max_bytes
        self._local = threading.local()

    def _connection(self) -> sqlite3.Connection:
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            # Autocommit mode: transactions are opened explicitly (BEGIN IMMEDIATE takes the write lock).
            conn = sqlite3.connect(self.path, timeout=10, isolation_level=None)
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=FULL")
            conn.execute(SCHEMA)
            self._local.conn = conn
        return conn

    @contextmanager
    def _write_lock(self) -> Iterator[sqlite3.Connection]:
        conn = self._connection()
        conn.execute("BEGIN IMMEDIATE")
        try:
            yield conn
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")

    @staticmethod
    def _used_bytes(conn: sqlite3.Connection) -> int:
        pages = conn.execute("PRAGMA page_count").fetchone()[0] - conn.execute("PRAGMA freelist_count").fetchone()[0]
        return int(pages) * int(conn.execute("PRAGMA page_size").fetchone()[0])

    def put(self, deliveries: list[Spooled]) -> None:
        """Keep ``deliveries`` (one transaction, fsynced when this returns); SpoolFull when they do not fit."""
        size = sum(len(d.body or b"") + 256 for d in deliveries)
        with self._write_lock() as conn:
            if self._used_bytes(conn) + size > self.max_bytes:
                raise SpoolFull(f"webhook spool {self.path} is full ({self.max_bytes} bytes)")
            conn.executemany(
                "INSERT INTO deliveries (token, company_id, secret_digest, body, request_id, received_at)"
                " VALUES (?, ?, ?, ?, ?, ?)",
                [(d.token, d.company_id, d.secret_digest, d.body, d.request_id, d.received_at) for d in deliveries],
            )

    def drain(self, store: Callable[[list[Spooled]], None], limit: int, on_empty: Callable[[], None]) -> int:
        """Hand the oldest ``limit`` rows to ``store`` (which commits them to the inbox or raises), then
        delete them; the number handed over. On an empty spool call ``on_empty`` while no row can be added."""
        with self._write_lock() as conn:
            rows = conn.execute(
                "SELECT id, token, company_id, secret_digest, body, request_id, received_at FROM deliveries"
                " ORDER BY id LIMIT ?", (limit,),
            ).fetchall()
            if not rows:
                on_empty()
                return 0
            store([Spooled(*row[1:]) for row in rows])
            conn.execute("DELETE FROM deliveries WHERE id <= ?", (rows[-1][0],))
        return len(rows)

    def is_empty(self) -> bool:
        return self._connection().execute("SELECT 1 FROM deliveries LIMIT 1").fetchone() is None

    def stats(self) -> SpoolStats:
        """How much waits in the spool (read without the write lock)."""
        conn = self._connection()
        count, oldest = conn.execute("SELECT count(*), min(received_at) FROM deliveries").fetchone()
        return SpoolStats(int(count), self._used_bytes(conn), oldest)

    def close(self) -> None:
        """Close this thread's connection (others close with their threads)."""
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            conn.close()
            self._local.conn = None
