"""The engine, the session and the declarative base: the one leaf every model imports."""

from __future__ import annotations

import threading
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, cast

from flask import current_app
from flask.globals import _cv_app
from sqlalchemy import JSON, DateTime, MetaData, create_engine, event
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.engine import Engine
from sqlalchemy.orm import DeclarativeBase, Session, scoped_session, sessionmaker
from sqlalchemy.types import TypeDecorator

NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

JSONType = JSON().with_variant(JSONB(), "postgresql")


def utcnow() -> datetime:
    """The current time, timezone-aware in UTC."""
    return datetime.now(UTC)


class UTCDateTime(TypeDecorator[datetime]):
    """A timestamp stored in UTC that always comes back timezone-aware in UTC (SQLite forgets the
    zone, so an aware value is converted to UTC before it is stored; a naive one is taken as UTC)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        return _in_utc(value)

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        return _in_utc(value)


def _in_utc(value: datetime | None) -> datetime | None:
    if value is None:
        return None
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class Base(DeclarativeBase):
    """Declarative base with constraint names Alembic can rely on."""

    metadata = MetaData(naming_convention=NAMING)


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=10000")
    cursor.close()


def make_engine(url: str, pool_size: int = 10, max_overflow: int = 20) -> Engine:
    """An engine tuned for the URL's database: pooled PostgreSQL (``pool_size`` connections kept open,
    up to ``max_overflow`` more while busy) or a WAL-mode SQLite file."""
    if url.startswith("sqlite"):
        engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 10})
        event.listen(engine, "connect", _sqlite_pragmas)
        return engine
    if url.startswith("postgresql://"):
        url = "postgresql+psycopg2://" + url.removeprefix("postgresql://")
    return create_engine(url, pool_pre_ping=True, pool_size=pool_size, max_overflow=max_overflow, pool_recycle=1800)


@dataclass(frozen=True)
class _AppDatabase:
    """What one app holds: its engine (one per app, as Flask-SQLAlchemy keeps them)."""

    engine: Engine


def _scope() -> int:
    # One session per app context (each app talks to its own engine); per thread outside any context.
    ctx = _cv_app.get(None)
    return id(ctx) if ctx is not None else threading.get_ident()


class Database:
    """The session of the current app context, bound to that app's engine; apps bind with ``init_app``."""

    def __init__(self) -> None:
        # scoped_session takes any session factory; its stubs only name sessionmaker.
        factory = cast("sessionmaker[Session]", self._new_session)
        self.session: scoped_session[Session] = scoped_session(factory, scopefunc=_scope)

    def _new_session(self) -> Session:
        return Session(bind=self.engine, expire_on_commit=False)

    @property
    def engine(self) -> Engine:
        """The current app's engine."""
        state: _AppDatabase = current_app.extensions["db"]
        return state.engine

    def init_app(self, app: Any) -> None:
        """Give ``app`` its own engine (from its settings); the session is removed after every context."""
        settings = app.config["SETTINGS"]
        engine = make_engine(settings.database_url, settings.database_pool_size, settings.database_max_overflow)
        app.extensions["db"] = _AppDatabase(engine)

        @app.teardown_appcontext
        def _remove_session(exc: BaseException | None) -> None:
            if exc is not None:
                self.session.rollback()
            self.session.remove()


db = Database()
