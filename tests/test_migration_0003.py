"""Migration 0003 on rows written by revision 0002: the new booking, client and company columns are filled
from the stored payloads (in batches), and the downgrade gives 0002's columns back."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
import sqlalchemy as sa
from alembic import command
from sqlalchemy.orm import Session

from models import Booking, Client, Company
from models.db import JSONType, make_engine
from services.platform.schema import alembic_config
from tests.support import Backends, fresh_postgres_database

NOW = datetime(2026, 11, 28, 12, tzinfo=UTC)
MANY = 1_100  # more than one backfill batch

# The tables as revision 0002 left them (the models describe the newest revision).
OLD_COMPANIES = sa.table(
    "companies", sa.column("id", sa.Integer), sa.column("salon_id", sa.BigInteger), sa.column("title", sa.String),
    sa.column("integration_status", sa.String), sa.column("webhook_secret_generation", sa.Integer),
    *(sa.column(name, sa.DateTime(timezone=True)) for name in ("registered_at", "created_at", "updated_at")),
)
OLD_CLIENTS = sa.table(
    "clients", sa.column("id", sa.Integer), sa.column("company_id", sa.Integer), sa.column("client_id", sa.BigInteger),
    sa.column("name", sa.String), sa.column("phone", sa.String), sa.column("data", JSONType),
    *(sa.column(name, sa.DateTime(timezone=True)) for name in ("created_at", "updated_at")),
)
OLD_BOOKINGS = sa.table(
    "bookings", sa.column("id", sa.Integer), sa.column("company_id", sa.Integer), sa.column("record_id", sa.BigInteger),
    sa.column("status", sa.String), sa.column("starts_at", sa.String), sa.column("data", JSONType),
    *(sa.column(name, sa.DateTime(timezone=True)) for name in ("created_at", "updated_at")),
)


@pytest.fixture(params=["sqlite", "postgresql"])
def empty_database(request: pytest.FixtureRequest, backends: Backends, tmp_path: Any) -> Iterator[str]:
    """The URL of a database with no tables: a SQLite file, or a fresh PostgreSQL database."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'migrations.db'}"
        return
    if not backends.is_postgres:
        pytest.skip("this run has no PostgreSQL")
    made = fresh_postgres_database("m" + uuid.uuid4().hex[:9])
    assert made is not None
    url, drop = made
    try:
        yield url
    finally:
        drop()


def _old_booking(row_id: int, data: dict[str, Any] | None) -> dict[str, Any]:
    given = (data or {}).get("datetime") or (data or {}).get("date")
    return {"id": row_id, "company_id": 1, "record_id": row_id, "status": "active", "data": data,
            "starts_at": str(given)[:32] if given is not None else None, "created_at": NOW, "updated_at": NOW}


REFERENCE = {"id": 1, "client_id": 67890, "datetime": "2024-09-17T15:00:00"}
NATIVE = {"id": 2, "datetime": "2024-09-17T15:00:00+05:00", "date": "2024-09-17 15:00:00", "seance_length": 5400,
          "services": [{"id": 2, "title": "Укладка"}, {"id": 1, "title": "Стрижка"}],
          "staff": {"id": 3, "name": "Анна"}, "attendance": 2,
          "client": {"id": 77, "name": "Ольга", "phone": "8 900 765-43-21"}}


def _write_0002_rows(url: str) -> None:
    engine = make_engine(url)
    with engine.begin() as conn:
        conn.execute(sa.insert(OLD_COMPANIES), [{
            "id": 1, "salon_id": 700001, "title": "Салон", "integration_status": "active",
            "webhook_secret_generation": 1, "registered_at": NOW, "created_at": NOW, "updated_at": NOW}])
        conn.execute(sa.insert(OLD_CLIENTS), [
            {"company_id": 1, "client_id": 67890, "name": "Иван", "phone": "8 900 123-45-67",
             "data": {"id": 67890, "name": "Иван", "phone": "8 900 123-45-67"}, "created_at": NOW, "updated_at": NOW},
            {"company_id": 1, "client_id": 5, "name": None, "phone": "спросить",
             "data": {"id": 5, "phone": "спросить"}, "created_at": NOW, "updated_at": NOW},
        ])
        rows = [_old_booking(1, REFERENCE), _old_booking(2, NATIVE), _old_booking(3, {"id": 3, "datetime": "a"}),
                _old_booking(4, None)]
        rows += [_old_booking(n, {"id": n, "date": "2024-10-01 09:30:00"}) for n in range(5, 5 + MANY)]
        conn.execute(sa.insert(OLD_BOOKINGS), rows)
    engine.dispose()


def test_0003_fills_the_new_columns_from_the_stored_payloads_and_downgrades(empty_database):
    config = alembic_config(empty_database)
    command.upgrade(config, "0002")
    _write_0002_rows(empty_database)
    command.upgrade(config, "head")

    engine = make_engine(empty_database)
    with Session(engine) as session:
        company = session.get(Company, 1)
        assert company is not None and (company.timezone, company.address) == ("Europe/Moscow", None)
        ivan, unknown, olga = (session.scalars(sa.select(Client).where(Client.client_id == n)).one()
                               for n in (67890, 5, 77))
        assert (ivan.phone, ivan.data["phone"]) == ("+79001234567", "8 900 123-45-67")
        assert (unknown.phone, unknown.data["phone"]) == (None, "спросить")

        reference, native, unreadable, empty = (session.get(Booking, n) for n in (1, 2, 3, 4))
        assert reference is not None and native is not None and unreadable is not None and empty is not None
        assert reference.starts_at == datetime(2024, 9, 17, 12, tzinfo=UTC)  # 15:00 in Moscow
        assert reference.client_id == ivan.id
        assert (native.starts_at, native.ends_at) == (datetime(2024, 9, 17, 10, tzinfo=UTC),
                                                      datetime(2024, 9, 17, 11, 30, tzinfo=UTC))
        assert (native.staff_id, native.staff_name, native.services, native.attendance) == (
            3, "Анна", ["Стрижка", "Укладка"], 2)
        assert native.client_id == olga.id and (olga.name, olga.phone) == ("Ольга", "+79007654321")
        assert (unreadable.starts_at, unreadable.client_id, empty.starts_at, empty.services) == (None, None, None, [])
        late = session.scalars(sa.select(Booking.starts_at).where(Booking.id >= 5)).all()
        assert len(late) == MANY and set(late) == {datetime(2024, 10, 1, 6, 30, tzinfo=UTC)}

    command.downgrade(config, "0002")
    with engine.connect() as conn:
        starts = dict(conn.execute(sa.select(OLD_BOOKINGS.c.id, OLD_BOOKINGS.c.starts_at)
                                   .where(OLD_BOOKINGS.c.id <= 5)).all())
        phones = dict(conn.execute(sa.select(OLD_CLIENTS.c.client_id, OLD_CLIENTS.c.phone)).all())
        columns = {c["name"] for c in sa.inspect(conn).get_columns("companies")}
    assert starts == {1: "2024-09-17T15:00:00", 2: "2024-09-17T15:00:00+05:00", 3: "a", 4: None,
                      5: "2024-10-01 09:30:00"}
    assert phones == {67890: "8 900 123-45-67", 5: "спросить", 77: "8 900 765-43-21"}
    assert "timezone" not in columns and "address" not in columns
    engine.dispose()
