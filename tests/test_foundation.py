"""The skeleton: reference pages, health, the worker round trip, configuration errors, schema."""

from __future__ import annotations

import subprocess
import sys
import threading
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import pytest
from alembic import command
from flask import Flask

from models import Company, db
from services.platform.pubsub import MemoryEventBus
from services.platform.schema import alembic_config
from tests.support import ROOT


def test_self_test_is_the_reference_answer(client):
    response = client.get("/marketplace/test")
    assert response.status_code == 200
    assert response.get_json() == {
        "success": True,
        "status": "ok",
        "endpoints": {
            "connect": "/marketplace/connect",
            "register": "POST /marketplace/register",
            "qr": "/marketplace/qr/:token",
            "status": "/marketplace/status/:companyId",
            "callback": "POST /marketplace/callback",
            "webhook": "POST /marketplace/webhook/:companyId",
            "companies": "/marketplace/companies",
        },
        "message": "Marketplace integration endpoints are ready",
    }
    # The reference's key order is kept on the wire.
    assert response.get_data(as_text=True).index('"connect"') < response.get_data(as_text=True).index('"companies"')


def test_landing_page_is_russian_html(client):
    response = client.get("/marketplace/")
    assert response.status_code == 200
    assert response.mimetype == "text/html"
    page = response.get_data(as_text=True)
    assert "WhatsApp" in page and "Как установить" in page and 'lang="ru"' in page


def test_unknown_path_answers_the_json_error_shape(client):
    response = client.get("/marketplace/no-such-thing")
    assert response.status_code == 404
    assert response.get_json() == {"success": False, "error": "Not found"}


def test_health_reports_every_dependency_with_a_live_worker(client, worker):
    response = client.get("/marketplace/health")
    body = response.get_json()
    assert response.status_code == 200, body
    assert body["success"] is True
    assert body["checks"]["database"]["ok"] and body["checks"]["broker"]["ok"]
    assert body["checks"]["worker"]["ok"] and body["checks"]["worker"]["worker"]


def test_health_is_503_when_the_broker_is_unreachable(make_app):
    from tests.support import free_port

    app = make_app(redis_url=f"redis://127.0.0.1:{free_port()}/0")
    response = app.test_client().get("/marketplace/health")
    assert response.status_code == 503
    body = response.get_json()
    assert body["success"] is False
    assert body["checks"]["broker"]["ok"] is False
    assert body["checks"]["database"]["ok"] is True


def test_liveness_touches_no_dependency(make_app):
    from tests.support import free_port

    app = make_app(redis_url=f"redis://127.0.0.1:{free_port()}/0")
    assert app.test_client().get("/marketplace/health/live").status_code == 200


@pytest.mark.parametrize("kind", ["memory", "redis"])
def test_event_bus_contract(kind, app: Flask):
    bus = MemoryEventBus() if kind == "memory" else app.extensions["bus"]
    got_a: list[dict] = []
    got_b: list[dict] = []
    done = threading.Event()

    def on_a(message: dict) -> None:
        got_a.append(message)
        done.set()

    stop_a = bus.subscribe("company:1", on_a)
    stop_b = bus.subscribe("company:2", got_b.append)
    try:
        bus.emit(1, "whatsapp.connected", {"phone": "+79001234567"})
        assert done.wait(5)
        assert got_a == [{"event": "whatsapp.connected", "company_id": 1, "data": {"phone": "+79001234567"}}]
        assert got_b == []
    finally:
        stop_a()
        stop_b()
    bus.emit(1, "late", {})
    assert len(got_a) == 1


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({"DATABASE_URL": "mysql://nope"}, "DATABASE_URL"),
        ({"JWT_TTL_SECONDS": "soon"}, "JWT_TTL_SECONDS"),
        ({"APP_ENV": "production", "DATABASE_URL": "postgresql://x/y"}, "SECRET_KEY"),
    ],
)
def test_bad_configuration_fails_with_a_message_not_a_traceback(env, expected):
    result = subprocess.run(
        [sys.executable, "-c", "from web import create_app; create_app()"],
        cwd=ROOT, env={"PATH": "/usr/bin:/bin", **env}, capture_output=True, text=True, timeout=60,
    )
    assert result.returncode != 0
    assert "configuration error" in result.stderr and expected in result.stderr
    assert "Traceback" not in result.stderr


def test_migrations_match_the_models(backends):
    """The schema is created by Alembic alone, and it matches the models exactly."""
    command.check(alembic_config(backends.database_url))


def test_an_aware_time_is_stored_as_the_same_instant(ctx, company_factory):
    """SQLite keeps no zone: a time with an offset must be stored as UTC, not as its wall-clock reading."""
    made = company_factory(activated_at=datetime(2024, 9, 17, 15, tzinfo=ZoneInfo("Asia/Yekaterinburg")))
    db.session.expire_all()
    company = db.session.get(Company, made.id)
    assert company is not None and company.activated_at == datetime(2024, 9, 17, 10, tzinfo=UTC)
    assert company.activated_at.tzinfo is UTC


def test_wsgi_entry_point_only_builds_the_app():
    lines = [line for line in (ROOT / "wsgi.py").read_text().splitlines() if line.strip()]
    assert lines == [
        "from web import create_app",
        "app = create_app()",
        'celery_app = app.extensions["celery"]',
    ]


def test_commands_in_development_find_the_running_embedded_stack(tmp_path):
    """``make run`` leaves var/devstack.env; a CLI in another terminal reads it, production never does."""
    (tmp_path / "var").mkdir()
    (tmp_path / "var" / "devstack.env").write_text("REDIS_URL=redis://127.0.0.1:6390/0\nSECRET_KEY=from-devstack\n")
    code = "from services.platform.settings import load_settings as l; s = l(); print(s.redis_url, s.secret_key)"
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT)}

    def run(**extra: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env={**env, **extra},
                              capture_output=True, text=True, timeout=60)

    assert run().stdout.split() == ["redis://127.0.0.1:6390/0", "from-devstack"]
    assert run(REDIS_URL="redis://10.0.0.1:6379/0").stdout.split()[0] == "redis://10.0.0.1:6379/0"
    production = run(APP_ENV="production", DATABASE_URL="postgresql://x/y")
    assert "SECRET_KEY" in production.stderr and production.returncode == 3


def test_a_405_names_the_allowed_methods(client):
    response = client.delete("/marketplace/register")
    assert response.status_code == 405 and response.is_json
    assert set(response.headers["Allow"].split(", ")) >= {"POST", "OPTIONS"}
    assert response.json == {"success": False, "error": "Method not allowed"}
