"""mirror data for client messaging: booking times as timestamps, staff, sorted services, attendance
and client link; client phones in E.164; company time zone and address

The new columns are filled from the payload data the rows already hold, with the same readers the
mirror uses (services.webhooks.records), a batch of rows at a time.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-29
"""
from __future__ import annotations

from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

import sqlalchemy as sa
from alembic import op

from models.db import JSONType, UTCDateTime
from services.webhooks import records

revision = '0003'
down_revision = '0002'
branch_labels = None
depends_on = None

BATCH = 500
DEFAULT_TIMEZONE = "Europe/Moscow"

companies = sa.table("companies", sa.column("id", sa.Integer), sa.column("timezone", sa.String))
clients = sa.table(
    "clients", sa.column("id", sa.Integer), sa.column("company_id", sa.Integer), sa.column("client_id", sa.BigInteger),
    sa.column("name", sa.String), sa.column("phone", sa.String), sa.column("data", JSONType),
    sa.column("created_at", UTCDateTime()), sa.column("updated_at", UTCDateTime()),
)
bookings = sa.table(
    "bookings", sa.column("id", sa.Integer), sa.column("company_id", sa.Integer), sa.column("data", JSONType),
    sa.column("starts_at", UTCDateTime()), sa.column("ends_at", UTCDateTime()),
    sa.column("staff_id", sa.BigInteger), sa.column("staff_name", sa.String), sa.column("services", JSONType),
    sa.column("attendance", sa.SmallInteger), sa.column("client_id", sa.Integer),
)
OLD_STARTS_AT = sa.table("bookings", sa.column("id", sa.Integer), sa.column("starts_at", sa.String))


def _batches(conn: sa.Connection, query: sa.Select[Any], id_column: sa.ColumnElement[int]) -> Any:
    """The rows of ``query`` in id order, ``BATCH`` at a time (keyset paging: nothing held in memory)."""
    last = 0
    while rows := conn.execute(query.where(id_column > last).order_by(id_column).limit(BATCH)).all():
        yield rows
        last = rows[-1].id


def _update(conn: sa.Connection, table: Any, values: list[dict[str, Any]]) -> None:
    """One executemany UPDATE of ``table`` by ``id``: each dict holds the row's ``id`` and its new values."""
    if values:
        # Parameters may not share the names of the columns they set.
        columns = {name: sa.bindparam(f"new_{name}") for name in values[0] if name != "id"}
        statement = table.update().where(table.c.id == sa.bindparam("row_id")).values(columns)
        conn.execute(statement, [{f"new_{k}" if k != "id" else "row_id": v for k, v in row.items()} for row in values])


def _client_ids(conn: sa.Connection, wanted: dict[tuple[int, int], dict[str, Any] | None]) -> dict[tuple[int, int], int]:
    """The clients rows of (company, YClients client) pairs, created from what the records carry if missing."""
    def existing() -> dict[tuple[int, int], int]:
        pairs = sa.tuple_(clients.c.company_id, clients.c.client_id).in_(list(wanted))
        query = sa.select(clients.c.id, clients.c.company_id, clients.c.client_id).where(pairs)
        return {(row.company_id, row.client_id): row.id for row in conn.execute(query)}

    found = existing()
    missing = [pair for pair in wanted if pair not in found]
    if missing:
        now = datetime.now(UTC)
        new_rows = []
        for company_id, client_id in missing:
            data = wanted[(company_id, client_id)]
            name, phone = records.client_columns(data or {})
            new_rows.append({"company_id": company_id, "client_id": client_id, "name": name, "phone": phone,
                             "data": data, "created_at": now, "updated_at": now})
        conn.execute(clients.insert(), new_rows)
        found = existing()
    return found


def _backfill_clients(conn: sa.Connection) -> None:
    for rows in _batches(conn, sa.select(clients.c.id, clients.c.data), clients.c.id):
        _update(conn, clients, [{"id": row.id, "phone": records.client_columns(row.data or {})[1]} for row in rows])


def _backfill_bookings(conn: sa.Connection) -> None:
    query = (
        sa.select(bookings.c.id, bookings.c.company_id, bookings.c.data, companies.c.timezone)
        .join(companies, companies.c.id == bookings.c.company_id)
    )
    for rows in _batches(conn, query, bookings.c.id):
        read = {row.id: records.read_record(row.data or {}, ZoneInfo(row.timezone)) for row in rows}
        wanted: dict[tuple[int, int], dict[str, Any] | None] = {}
        for row in rows:
            client_id, carried = records.record_client(row.data or {})
            if client_id is not None:
                wanted[(row.company_id, client_id)] = carried
        links = _client_ids(conn, wanted) if wanted else {}
        _update(conn, bookings, [
            {
                "id": row.id, "starts_at": fields.starts_at, "ends_at": fields.ends_at,
                "staff_id": fields.staff_id, "staff_name": fields.staff_name, "services": fields.services,
                "attendance": fields.attendance,
                "client_id": links.get((row.company_id, fields.client_id)) if fields.client_id is not None else None,
            }
            for row in rows
            for fields in (read[row.id],)
        ])


def upgrade() -> None:
    with op.batch_alter_table('companies', schema=None) as batch_op:
        batch_op.add_column(sa.Column('address', sa.String(length=255), nullable=True))
        batch_op.add_column(sa.Column('timezone', sa.String(length=64), server_default=DEFAULT_TIMEZONE,
                                      nullable=False))

    with op.batch_alter_table('bookings', schema=None) as batch_op:
        # The old text column held the payload's own string, which stays in data: read again below.
        batch_op.drop_column('starts_at')
        batch_op.add_column(sa.Column('starts_at', sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column('ends_at', sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column('staff_id', sa.BigInteger(), nullable=True))
        batch_op.add_column(sa.Column('staff_name', sa.String(length=255), nullable=True))
        batch_op.add_column(sa.Column('services', JSONType, nullable=True))
        batch_op.add_column(sa.Column('attendance', sa.SmallInteger(), nullable=True))
        batch_op.add_column(sa.Column('client_id', sa.Integer(), nullable=True))
        batch_op.create_index(batch_op.f('ix_bookings_client_id'), ['client_id'], unique=False)
        batch_op.create_foreign_key(batch_op.f('fk_bookings_client_id_clients'), 'clients', ['client_id'], ['id'],
                                    ondelete='SET NULL')

    conn = op.get_bind()
    _backfill_clients(conn)
    _backfill_bookings(conn)


def downgrade() -> None:
    with op.batch_alter_table('bookings', schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f('fk_bookings_client_id_clients'), type_='foreignkey')
        batch_op.drop_index(batch_op.f('ix_bookings_client_id'))
        for column in ('client_id', 'attendance', 'services', 'staff_name', 'staff_id', 'ends_at', 'starts_at'):
            batch_op.drop_column(column)
        batch_op.add_column(sa.Column('starts_at', sa.String(length=32), nullable=True))

    conn = op.get_bind()
    # Revision 0002 kept the payload's own strings: the time as sent, the phone as sent.
    for rows in _batches(conn, sa.select(bookings.c.id, bookings.c.data), bookings.c.id):
        values = []
        for row in rows:
            given = (row.data or {}).get("datetime") or (row.data or {}).get("date")
            values.append({"id": row.id, "starts_at": str(given)[:32] if given is not None else None})
        _update(conn, OLD_STARTS_AT, values)
    for rows in _batches(conn, sa.select(clients.c.id, clients.c.data), clients.c.id):
        values = []
        for row in rows:
            phone = (row.data or {}).get("phone")
            values.append({"id": row.id, "phone": str(phone)[:32] if phone is not None else None})
        _update(conn, clients, values)

    # Not in a batch: on SQLite a batch copies the table and drops the old one, and dropping companies
    # would cascade into every table that references it. SQLite drops a plain column itself.
    op.drop_column('companies', 'timezone')
    op.drop_column('companies', 'address')
