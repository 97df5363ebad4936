"""The inbox writer: its raw SQL matches the models, group commit can be switched off, threads restart once."""

from __future__ import annotations

import json
import threading

import pytest
from sqlalchemy import inspect

from models import Company, WebhookEvent, db
from services.webhooks import EVENTS
from services.webhooks.inbox_rows import COLUMNS, PG_COMPANIES, PG_INSERT
from services.webhooks.writer import InboxWriter
from web.marketplace.webhooks import inbox_writer

BODY = json.dumps({"type": "booking_created", "data": {"id": 5}}).encode()


def test_the_raw_statements_name_the_models_columns(ctx, backends):
    if not backends.is_postgres:
        pytest.skip("the raw statements run on PostgreSQL only")
    in_database = {column["name"]: column for column in inspect(db.engine).get_columns(EVENTS.name)}
    assert set(COLUMNS) <= set(in_database) and set(COLUMNS) <= set(EVENTS.c.keys())
    # Every column the database needs a value for is one the writer fills.
    required = {name for name, column in in_database.items()
                if not column["nullable"] and column.get("default") is None and not column.get("autoincrement")}
    assert required - {"id"} <= set(COLUMNS)
    for name in ("id", "salon_id", "webhook_secret_generation"):
        assert name in PG_COMPANIES and name in Company.__table__.c
    assert PG_INSERT.startswith(f"INSERT INTO {EVENTS.name} (")


def test_with_group_commit_off_the_request_thread_stores_its_own_delivery(make_app, company_factory):
    app = make_app(webhook_group_commit=False)
    with app.app_context():
        made = company_factory()
        writer = inbox_writer(app)
        assert writer.group_commit is False
        received = writer.submit(made.id, made.webhook_secret, BODY, None)
        assert received.outcome == "accepted"
        assert db.session.get(WebhookEvent, received.event_id) is not None
        assert writer._thread is None and writer._enqueuer is None  # no thread was needed


def test_sqlite_apps_default_to_the_per_request_path(make_app, run_dir):
    sqlite = make_app(database_url=f"sqlite:///{run_dir / 'writer.db'}")
    assert inbox_writer(sqlite).group_commit is False


def test_a_restarted_writer_thread_does_not_start_a_second_enqueuer(app):
    writer = InboxWriter(app)
    writer._ensure_running()
    first_enqueuer = writer._enqueuer
    writer._thread = None  # as if the writer thread had died
    writer._ensure_running()
    assert writer._enqueuer is first_enqueuer
    names = [t.name for t in threading.enumerate() if t.name == "inbox-enqueuer" and t is first_enqueuer]
    assert names == ["inbox-enqueuer"]
