"""Operator CLI (``flask --app wsgi …``) against the real database: keys, company, stats, callbacks."""

from __future__ import annotations

import base64
import json
import subprocess
import sys
import uuid
from collections.abc import Callable

import pytest
import redis
from flask import Flask
from sqlalchemy import select

from models import ApiKey, Callback, CompanyEvent, WebhookEvent, WhatsAppSession, db
from services.access import api_keys
from tests.factories import make_company
from tests.support import ROOT, Backends


@pytest.fixture
def cli(app: Flask, ctx: Flask) -> Callable[..., object]:
    """``cli("keys", "list")`` → the click result of the command run on the test app."""
    runner = app.test_cli_runner()

    def invoke(*args: str) -> object:
        return runner.invoke(args=list(args))

    return invoke


def _key_from(output: str) -> str:
    return output.strip().splitlines()[0]


def test_an_admin_key_made_by_the_cli_is_an_admin_for_the_api(cli, client):
    result = cli("keys", "create", "--admin", "--label", "ops")
    assert result.exit_code == 0, result.output
    key = _key_from(result.stdout)
    assert key.startswith("sk_") and len(key) > 40
    principal = api_keys.authenticate(key)
    assert principal is not None and principal.is_admin and principal.key_id is not None
    stored = db.session.scalar(select(ApiKey).where(ApiKey.id == principal.key_id))
    assert stored is not None and stored.company_id is None and stored.label == "ops"
    assert client.get("/marketplace/metrics", headers={"X-API-Key": key}).status_code == 200
    assert client.get("/marketplace/companies", headers={"X-API-Key": key}).status_code == 200


def test_a_company_key_acts_only_for_its_company(cli, company_factory):
    company = company_factory()
    result = cli("keys", "create", "--company", str(company.id), "--label", "crm")
    assert result.exit_code == 0, result.output
    principal = api_keys.authenticate(_key_from(result.stdout))
    assert principal is not None and principal.company_id == company.id and not principal.is_admin
    kinds = db.session.scalars(select(CompanyEvent.kind).where(CompanyEvent.company_id == company.id)).all()
    assert "key_created" in kinds


@pytest.mark.parametrize("args", [[], ["--admin", "--company", "1"]])
def test_create_needs_exactly_one_owner(cli, args):
    result = cli("keys", "create", *args)
    assert result.exit_code == 2 and "exactly one of --company ID or --admin" in result.output


def test_unknown_company_is_an_error_not_a_traceback(cli):
    for args in (["keys", "create", "--company", "424242"], ["keys", "rotate", "--company", "424242"],
                 ["company", "show", "424242"]):
        result = cli(*args)
        assert result.exit_code == 1, (args, result.output)
        assert "Компания не найдена" in result.output
    assert db.session.scalar(select(ApiKey.id)) is None


def test_rotate_replaces_the_company_key(cli, company_factory):
    company = company_factory()
    result = cli("keys", "rotate", "--company", str(company.id), "--label", "test")
    assert result.exit_code == 0, result.output
    new_key = _key_from(result.stdout)
    assert "revoked 1 key(s)" in result.stderr
    assert api_keys.authenticate(company.api_key) is None
    principal = api_keys.authenticate(new_key)
    assert principal is not None and principal.company_id == company.id
    event = db.session.scalar(select(CompanyEvent).where(CompanyEvent.kind == "key_rotated"))
    assert event is not None and event.company_id == company.id and new_key not in json.dumps(event.data)


def test_revoke_by_prefix_and_by_company(cli, company_factory):
    admin_key = _key_from(cli("keys", "create", "--admin").stdout)
    company = company_factory()
    other = company_factory()

    result = cli("keys", "revoke", "--prefix", admin_key[:10])
    assert result.exit_code == 0 and "revoked 1 key(s)" in result.stderr, result.output
    assert api_keys.authenticate(admin_key) is None

    result = cli("keys", "revoke", "--company", str(company.id))
    assert result.exit_code == 0 and "revoked 1 key(s)" in result.stderr, result.output
    assert api_keys.authenticate(company.api_key) is None
    assert api_keys.authenticate(other.api_key) is not None  # other companies untouched

    assert cli("keys", "revoke", "--prefix", "sk_").exit_code == 1  # too short to be safe
    assert cli("keys", "revoke").exit_code == 2


def test_revoke_one_whole_leaked_key(cli, company_factory):
    company = company_factory()
    second = _key_from(cli("keys", "create", "--company", str(company.id)).stdout)
    result = cli("keys", "revoke", "--prefix", second)
    assert result.exit_code == 0 and "revoked 1 key(s)" in result.stderr
    assert api_keys.authenticate(second) is None
    assert api_keys.authenticate(company.api_key) is not None


def test_list_shows_prefixes_never_keys(cli, company_factory):
    company = company_factory()
    admin_key = _key_from(cli("keys", "create", "--admin").stdout)
    listing = cli("keys", "list").stdout
    assert company.api_key[:10] in listing and admin_key[:10] in listing
    assert company.api_key not in listing and admin_key not in listing
    only_company = cli("keys", "list", "--company", str(company.id)).stdout
    assert company.api_key[:10] in only_company and admin_key[:10] not in only_company
    only_admin = cli("keys", "list", "--admin").stdout
    assert admin_key[:10] in only_admin and company.api_key[:10] not in only_admin


def test_company_show_tells_what_happened_without_secrets(cli, company_factory):
    company = company_factory(status="connected", whatsapp_phone="+79001234567", title="Салон Ромашка")
    db.session.add(WhatsAppSession(company_id=company.id, status="WORKING", gateway_session=f"c{company.id}"))
    db.session.add(CompanyEvent(company_id=company.id, kind="connected", data={"phone": "+79001234567"}))
    db.session.add(Callback(company_id=company.id, status="retrying", attempts=2, http_status=503,
                            error="YClients answered 503"))
    db.session.add(WebhookEvent(company_id=company.id, source="yclients", dedupe_key="cli-1",
                                type="booking_created", payload={"client": {"phone": "+79001234567"}},
                                status="dead", attempts=8, last_error="booking 55 refused"))
    db.session.commit()

    result = cli("company", "show", str(company.id))
    assert result.exit_code == 0, result.output
    out = result.stdout
    for expected in ("integration_status: connected", "status: WORKING", "connected", "retrying attempts=2 http=503",
                     "yclients/booking_created dead attempts=8", "booking 55 refused", "Салон Ромашка",
                     company.api_key[:10]):
        assert expected in out, (expected, out)
    for secret in (company.api_key, company.webhook_secret, company.token, "+79001234567"):
        assert secret not in out

    as_json = json.loads(cli("company", "show", str(company.id), "--json").stdout)
    assert as_json["company"]["integration_status"] == "connected"
    assert as_json["whatsapp_session"]["status"] == "WORKING"
    assert [w["status"] for w in as_json["webhook_events"]] == ["dead"]
    assert [c["status"] for c in as_json["callbacks"]] == ["retrying"]


def test_stats_are_the_companies_endpoint_stats(cli, client, company_factory, admin_headers):
    company_factory(status="connected")
    company_factory(status="active")
    company_factory(status="pending")
    company_factory(status="uninstalled")
    result = cli("stats", "--json")
    assert result.exit_code == 0, result.output
    stats = json.loads(result.stdout)
    assert stats == client.get("/marketplace/companies", headers=admin_headers).json["stats"]
    assert stats["total"] == 4 and stats["connected"] == 2
    text = cli("stats").stdout
    assert "total: 4" in text and "connected: 2" in text


def test_callbacks_resend_queues_the_callback(make_app, backends: Backends):
    namespace = f"{backends.namespace}-cli"
    app = make_app(redis_namespace=namespace, yclients_partner_token="partner-token-cli-0123456789",
                   yclients_application_id=77)
    with app.app_context():
        company = make_company(status="connected")
    client = redis.Redis.from_url(backends.redis_url)
    try:
        result = app.test_cli_runner().invoke(args=["callbacks", "resend", str(company.id)])
        assert result.exit_code == 0, result.output
        with app.app_context():
            row = db.session.scalar(select(Callback).where(Callback.company_id == company.id))
            assert row is not None and row.status == "pending"
        assert f"callback {row.id} for company {company.id}" in result.output
        messages = [json.loads(m) for m in client.lrange(f"{namespace}:celery", 0, -1)]
        queued = [json.loads(base64.b64decode(m["body"]))[0] for m in messages
                  if m["headers"]["task"] == "yclients.send_callback"]
        assert queued == [[company.id]]

        with app.app_context():
            pending = make_company(status="pending")
        refused = app.test_cli_runner().invoke(args=["callbacks", "resend", str(pending.id)])
        assert refused.exit_code == 1 and "WhatsApp не подключен" in refused.output
    finally:
        for key in client.scan_iter(f"{namespace}:*", count=1000):
            client.delete(key)
        client.close()


def test_the_cli_runs_as_a_real_process(backends: Backends, service_env: dict[str, str], ctx):
    label = "ops-" + uuid.uuid4().hex[:6]
    done = subprocess.run(
        [sys.executable, "-m", "flask", "--app", "wsgi", "keys", "create", "--admin", "--label", label],
        cwd=ROOT, env=backends.env(**service_env), capture_output=True, text=True, timeout=60,
    )
    assert done.returncode == 0, done.stderr
    key = _key_from(done.stdout)
    principal = api_keys.authenticate(key)
    assert principal is not None and principal.is_admin
    listing = subprocess.run(
        [sys.executable, "-m", "flask", "--app", "wsgi", "keys", "list", "--admin"],
        cwd=ROOT, env=backends.env(**service_env), capture_output=True, text=True, timeout=60,
    )
    assert listing.returncode == 0 and key[:10] in listing.stdout and label in listing.stdout
