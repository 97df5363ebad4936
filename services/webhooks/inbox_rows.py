"""The inbox rows of webhook deliveries, as the writer stores them: one delivery's row (accepted, or
rejected with its reason), the SELECT of the companies a batch names and the batch INSERT (raw psycopg2
on PostgreSQL), on one autocommit connection kept by the writer's thread."""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from psycopg2.extras import Json, execute_values
from sqlalchemy import Connection, select
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from models import Company, EventSource, EventStatus, db
from services.access import webhook_secrets
from services.platform.ids import MAX_ID
from services.webhooks import EVENTS
from services.webhooks.ingest import Outcome, Received, rejected_values
from services.webhooks.parsing import Malformed, excerpt, parse_delivery

log = logging.getLogger(__name__)

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
class Pending:
    company_id: int
    secret: str | None
    body: bytes | None
    request_id: str | None
    # A delivery drained from the spool: its secret kept as a digest, its arrival time and its spool key.
    secret_digest: str | None = None
    received_at: datetime | None = None
    spool_token: str | None = None
    done: threading.Event = field(default_factory=threading.Event)
    result: Received = field(default_factory=lambda: Received(Outcome.STORE_FAILED))


@dataclass(frozen=True)
class CompanyKey:
    id: int
    salon_id: int
    webhook_secret_generation: int | None


def row_values(item: Pending, companies: dict[int, CompanyKey | None]) -> dict[str, Any]:
    """The inbox row of one delivery: accepted, or rejected with its reason."""
    company = companies.get(item.company_id)

    def rejected(reason: str, owner: int | None) -> dict[str, Any]:
        payload: dict[str, Any] = {"url_company_id": item.company_id}
        if item.body is not None:
            payload["excerpt"] = excerpt(item.body)
        values = rejected_values(owner, EventSource.YCLIENTS, reason, payload, item.request_id)
        if item.spool_token is not None:  # drained twice (a crash between inbox and spool), stored once
            values["dedupe_key"] = f"rejected:spool:{item.spool_token}"
        return values

    if company is None:
        return rejected("unknown company", None)
    if item.spool_token is not None:
        authentic = webhook_secrets.verify_webhook_secret_digest(company, item.secret_digest)
    else:
        authentic = webhook_secrets.verify_webhook_secret(company, item.secret)
    if not authentic:
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


def cursor_of(conn: Connection) -> Any:
    """A psycopg2 cursor on the connection's own DBAPI connection."""
    driver = conn.connection.driver_connection
    assert driver is not None
    return driver.cursor()


class OwnConnection:
    """One autocommit connection kept by one thread: a batch's INSERT is its own transaction, so storing
    it is one round trip (no BEGIN, no COMMIT) and no pool checkout or ping per batch."""

    def __init__(self) -> None:
        self._conn: Connection | None = None

    def get(self) -> Connection:
        if self._conn is None:
            self._conn = db.engine.connect().execution_options(isolation_level="AUTOCOMMIT")
        return self._conn

    def reset(self) -> None:
        if self._conn is not None:
            try:
                self._conn.close()
            except Exception:
                log.warning("closing the inbox writer's connection failed", exc_info=True)
            self._conn = None


def companies_named(batch: list[Pending], conn: Connection | None) -> dict[int, CompanyKey | None]:
    """The companies a batch names, read with one SELECT (never cached: revocation is immediate)."""
    wanted = {item.company_id for item in batch if 0 < item.company_id <= MAX_ID}
    if not wanted:
        return {}
    if conn is not None and conn.dialect.name == "postgresql":
        with cursor_of(conn) as cursor:
            cursor.execute(PG_COMPANIES, (sorted(wanted),))
            return {row[0]: CompanyKey(*row) for row in cursor.fetchall()}
    query = select(Company.id, Company.salon_id, Company.webhook_secret_generation).where(Company.id.in_(wanted))
    rows = conn.execute(query) if conn is not None else db.session.execute(query)
    return {row.id: CompanyKey(row.id, row.salon_id, row.webhook_secret_generation) for row in rows}

def insert_rows(conn: Connection, rows: list[dict[str, Any]]) -> dict[str, int]:
    """Insert the rows (one statement), skipping existing keys; the ids of those inserted, by key."""
    if conn.dialect.name == "postgresql":
        values = [tuple(Json(row[c]) if c == "payload" else row[c] for c in COLUMNS) for row in rows]
        with cursor_of(conn) as cursor:
            return dict(execute_values(cursor, PG_INSERT, values, page_size=len(values), fetch=True))
    # executemany form: compiled once and cached, sent as one multi-row statement per page.
    statement = (
        sqlite_insert(EVENTS)
        .on_conflict_do_nothing(index_elements=["dedupe_key"])
        .returning(EVENTS.c.id, EVENTS.c.dedupe_key)
    )
    return {row.dedupe_key: row.id for row in conn.execute(statement, rows)}
