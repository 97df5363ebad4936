"""The marketplace lifecycle webhook: uninstall and freeze, partner token, dedupe per delivery."""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Iterator
from datetime import timedelta

import pytest
import redis
from flask import Flask
from sqlalchemy import select, update

from integrations.whatsapp import GatewayError
from models import Company, CompanyEvent, EventStatus, IntegrationStatus, WebhookEvent, db, utcnow
from services.access import api_keys, webhook_secrets
from services.platform import runtime
from services.platform.pubsub import company_channel
from services.webhooks import lifecycle, processing
from services.webhooks.parsing import digest
from services.whatsapp import sessions
from tasks.whatsapp import logout, stop_session
from tests.fakes.yclients import signed_user_data
from tests.support import Backends, free_port, wait_until

PARTNER_TOKEN = "partner-token-0123456789"
APPLICATION_ID = 777


@pytest.fixture
def lifecycle_app(make_app, backends: Backends) -> Iterator[Flask]:
    """An app with the partner token set, enqueueing into a namespace no worker consumes (to read the queue)."""
    namespace = f"{backends.namespace}lc"
    app = make_app(yclients_partner_token=PARTNER_TOKEN, yclients_application_id=APPLICATION_ID,
                   redis_namespace=namespace)
    yield app
    with redis.Redis.from_url(backends.redis_url) as client:
        for key in client.scan_iter(f"{namespace}:*"):
            client.delete(key)


def _queued_tasks(app: Flask) -> list[tuple[str, list]]:
    settings = app.config["SETTINGS"]
    with redis.Redis.from_url(settings.redis_url) as client:
        raws = client.lrange(settings.key("celery"), 0, -1)
    found = []
    for raw in raws:
        message = json.loads(raw)
        args = json.loads(base64.b64decode(message["body"]))[0]
        found.append((message["headers"]["task"], args))
    return found


def _body(salon_id: int, event: str, token: str = PARTNER_TOKEN) -> dict:
    return {"salon_id": salon_id, "application_id": APPLICATION_ID, "event": event, "partner_token": token}


def _events() -> list[WebhookEvent]:
    db.session.rollback()
    return list(db.session.scalars(select(WebhookEvent).order_by(WebhookEvent.id)))


def _process_all() -> None:
    for event in _events():
        processing.process_event(event.id)


def test_uninstall_logs_out_revokes_keys_and_secret(lifecycle_app, company_factory):
    made = company_factory(status=IntegrationStatus.ACTIVE)
    with lifecycle_app.test_client() as c:
        response = c.post("/marketplace/webhook/yclients", json=_body(made.salon_id, "uninstall"))
    assert response.status_code == 200 and response.get_json() == {"success": True}
    with lifecycle_app.app_context():
        [event] = _events()
        assert (event.source, event.type, event.company_id) == ("lifecycle", "lifecycle.uninstall", made.id)
        assert "partner_token" not in event.payload
        processing.process_event(event.id)
        company = db.session.get(Company, made.id, populate_existing=True)
        assert company is not None and company.integration_status == IntegrationStatus.UNINSTALLED
        assert webhook_secrets.webhook_secret(company) is None
        assert api_keys.authenticate(made.api_key) is None
        kinds = db.session.scalars(select(CompanyEvent.kind).where(CompanyEvent.company_id == made.id)).all()
        assert "uninstalled" in kinds
        assert ("whatsapp.logout", [made.id]) in _queued_tasks(lifecycle_app)
        assert _events()[0].status == EventStatus.PROCESSED
        # The revoked webhook URL no longer authenticates.
    with lifecycle_app.test_client() as c:
        c.post(f"/marketplace/webhook/{made.id}?secret={made.webhook_secret}", json={"type": "x", "data": {}})
    with lifecycle_app.app_context():
        assert _events()[-1].reject_reason == "invalid webhook secret"


def test_freeze_stops_the_session(lifecycle_app, company_factory):
    made = company_factory(status=IntegrationStatus.ACTIVE)
    with lifecycle_app.test_client() as c:
        assert c.post("/marketplace/webhook/yclients", json=_body(made.salon_id, "freeze")).status_code == 200
    with lifecycle_app.app_context():
        _process_all()
        company = db.session.get(Company, made.id, populate_existing=True)
        assert company is not None and company.integration_status == IntegrationStatus.FROZEN
        assert api_keys.authenticate(made.api_key) is not None
        assert ("whatsapp.stop_session", [made.id]) in _queued_tasks(lifecycle_app)


def test_retried_delivery_has_one_effect_but_another_day_counts_again(lifecycle_app, company_factory):
    made = company_factory(status=IntegrationStatus.ACTIVE)
    body = _body(made.salon_id, "uninstall")
    with lifecycle_app.test_client() as c:
        for _ in range(3):
            assert c.post("/marketplace/webhook/yclients", json=body).status_code == 200
    with lifecycle_app.app_context():
        [first] = _events()
        _process_all()
        # As if that uninstall had arrived yesterday; the salon then reinstalled.
        fields = {k: v for k, v in body.items() if k != "partner_token"}
        yesterday = (utcnow() - timedelta(days=1)).date().isoformat()
        db.session.execute(update(WebhookEvent).where(WebhookEvent.id == first.id)
                           .values(dedupe_key="lc:" + digest(fields, yesterday, lifecycle.installation(made.id))))
        company = db.session.get(Company, made.id)
        assert company is not None
        company.integration_status = IntegrationStatus.ACTIVE
        webhook_secrets.rotate_webhook_secret(company)
        db.session.commit()
    with lifecycle_app.test_client() as c:
        assert c.post("/marketplace/webhook/yclients", json=body).status_code == 200
    with lifecycle_app.app_context():
        events = _events()
        assert len(events) == 2
        processing.process_event(events[1].id)
        company = db.session.get(Company, made.id, populate_existing=True)
        assert company is not None and company.integration_status == IntegrationStatus.UNINSTALLED


@pytest.mark.parametrize("event, status", [("uninstall", IntegrationStatus.UNINSTALLED),
                                           ("freeze", IntegrationStatus.FROZEN)])
def test_the_same_event_after_a_reinstall_on_the_same_day_counts_again(
    lifecycle_app, company_factory, fake_yclients, event, status
):
    made = company_factory(status=IntegrationStatus.ACTIVE)
    fake_yclients.install(made.salon_id, "pending", application_id=APPLICATION_ID, partner_token=PARTNER_TOKEN)
    body = _body(made.salon_id, event)
    with lifecycle_app.test_client() as c:
        assert c.post("/marketplace/webhook/yclients", json=body).status_code == 200
    with lifecycle_app.app_context():
        _process_all()
    # The owner installs the app again from the marketplace, then removes or freezes it again that day.
    user_data, sign = signed_user_data({"id": 5, "name": "Олег"}, PARTNER_TOKEN)
    with lifecycle_app.test_client() as c:
        install = c.get("/marketplace/install", query_string={
            "salon_id": made.salon_id, "user_data": user_data, "user_data_sign": sign})
        assert install.status_code == 302
        assert c.post("/marketplace/webhook/yclients", json=body).status_code == 200
        assert c.post("/marketplace/webhook/yclients", json=body).status_code == 200  # YClients' retry
    with lifecycle_app.app_context():
        events = _events()
        assert [e.type for e in events] == [f"lifecycle.{event}"] * 2
        company = db.session.get(Company, made.id, populate_existing=True)
        assert company is not None and company.integration_status == IntegrationStatus.PENDING
        processing.process_event(events[1].id)
        company = db.session.get(Company, made.id, populate_existing=True)
        assert company is not None and company.integration_status == status


@pytest.mark.parametrize("token", ["wrong-token", "", None])
def test_wrong_partner_token_is_401_and_stored_as_rejected(lifecycle_app, company_factory, token):
    made = company_factory(status=IntegrationStatus.ACTIVE)
    body = _body(made.salon_id, "uninstall", token)  # type: ignore[arg-type]
    with lifecycle_app.test_client() as c:
        response = c.post("/marketplace/webhook/yclients", json=body)
    assert response.status_code == 401 and response.get_json()["success"] is False
    with lifecycle_app.app_context():
        [event] = _events()
        assert (event.status, event.reject_reason) == (EventStatus.REJECTED, "invalid partner token")
        assert "partner_token" not in event.payload
        company = db.session.get(Company, made.id, populate_existing=True)
        assert company is not None and company.integration_status == IntegrationStatus.ACTIVE


def test_partner_token_not_configured_rejects_everything(client, company_factory):
    made = company_factory()
    response = client.post("/marketplace/webhook/yclients", json=_body(made.salon_id, "uninstall"))
    assert response.status_code == 401


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"event": "unfreeze"}, "unknown lifecycle event"),
        ({"salon_id": 1}, "unknown salon"),
        ({"application_id": 1}, "application_id is not this application"),
    ],
)
def test_authentic_but_unusable_deliveries_are_200_and_rejected(lifecycle_app, company_factory, change, reason):
    made = company_factory()
    with lifecycle_app.test_client() as c:
        response = c.post("/marketplace/webhook/yclients", json={**_body(made.salon_id, "freeze"), **change})
    assert response.status_code == 200
    with lifecycle_app.app_context():
        [event] = _events()
        assert (event.status, event.reject_reason) == (EventStatus.REJECTED, reason)


def test_malformed_lifecycle_body_is_200_rejected_without_the_token(lifecycle_app):
    with lifecycle_app.test_client() as c:
        response = c.post("/marketplace/webhook/yclients", data=f'{{"partner_token": "{PARTNER_TOKEN}", broken')
    assert response.status_code == 200
    with lifecycle_app.app_context():
        [event] = _events()
        assert event.status == EventStatus.REJECTED and PARTNER_TOKEN not in json.dumps(event.payload)


def test_freeze_does_not_revive_an_uninstalled_company(lifecycle_app, company_factory):
    made = company_factory(status=IntegrationStatus.UNINSTALLED)
    with lifecycle_app.test_client() as c:
        c.post("/marketplace/webhook/yclients", json=_body(made.salon_id, "freeze"))
    with lifecycle_app.app_context():
        _process_all()
        company = db.session.get(Company, made.id, populate_existing=True)
        assert company is not None and company.integration_status == IntegrationStatus.UNINSTALLED


def test_uninstall_with_the_broker_down_is_retried_until_the_logout_is_queued(
    make_app, lifecycle_app, company_factory
):
    made = company_factory(status=IntegrationStatus.ACTIVE)
    with lifecycle_app.test_client() as c:
        assert c.post("/marketplace/webhook/yclients", json=_body(made.salon_id, "uninstall")).status_code == 200
    down = make_app(redis_url=f"redis://127.0.0.1:{free_port()}/0", yclients_partner_token=PARTNER_TOKEN,
                    yclients_application_id=APPLICATION_ID)
    with down.app_context():
        [event] = _events()
        event_id = event.id
        assert processing.process_event(event_id).status == EventStatus.FAILED
        company = db.session.get(Company, made.id, populate_existing=True)
        # Nothing half-done: the company keeps its status, keys and secret until the logout is queued.
        assert company is not None and company.integration_status == IntegrationStatus.ACTIVE
        assert api_keys.authenticate(made.api_key) is not None
    with lifecycle_app.app_context():
        db.session.execute(update(WebhookEvent).where(WebhookEvent.id == event_id)
                           .values(next_attempt_at=utcnow() - timedelta(seconds=1)))
        db.session.commit()
        assert processing.process_event(event_id).status == EventStatus.PROCESSED
        company = db.session.get(Company, made.id, populate_existing=True)
        assert company is not None and company.integration_status == IntegrationStatus.UNINSTALLED
        assert ("whatsapp.logout", [made.id]) in _queued_tasks(lifecycle_app)


@pytest.mark.parametrize(("task", "action", "outcome"), [(logout, "logout", "logged_out"),
                                                          (stop_session, "stop", "stopped")])
def test_session_end_is_retried_while_the_gateway_fails(ctx, company_factory, monkeypatch, task, action, outcome):
    made = company_factory(status=IntegrationStatus.ACTIVE)
    calls: list[tuple[str, str]] = []

    def flaky(called: str, session: str, company_id: int) -> None:
        calls.append((called, session))
        if len(calls) < 3:
            raise GatewayError("gateway unavailable")

    monkeypatch.setattr(sessions, "end_session", lambda company_id, reason: f"company-{company_id}")
    monkeypatch.setattr(sessions, "call_gateway", flaky)
    monkeypatch.setattr(sessions, "reconnect_delay", lambda attempt: 0)
    assert task.apply(args=[made.id]).get() == outcome
    assert calls == [(action, f"company-{made.id}")] * 3
    calls.clear()
    monkeypatch.setattr(task, "max_retries", 1)
    assert task.apply(args=[made.id]).get() == "failed"
    assert len(calls) == 2


def test_a_retried_session_end_tells_the_pages_once(ctx, company_factory):
    made = company_factory(status=IntegrationStatus.ACTIVE)
    pushed: list[dict] = []
    unsubscribe = runtime.bus().subscribe(company_channel(made.id), pushed.append)
    try:
        for _ in range(3):  # the first run, then two retries after gateway failures
            sessions.end_session(made.id, "logged_out")
            db.session.commit()
        sessions.end_session(made.id, "stopped")  # a different end is news again
        db.session.commit()
        wait_until(lambda: len(pushed) >= 2)
        time.sleep(0.3)  # room for a wrongly repeated event to arrive
    finally:
        unsubscribe()
    assert [m["data"]["reason"] for m in pushed if m["event"] == "whatsapp.disconnected"] == ["logged_out", "stopped"]


@pytest.mark.parametrize(
    "extra",
    [
        pytest.param({"reason": "x"}, id="reason-key"),
        pytest.param({"company_id": 2}, id="company-id-key"),
        pytest.param({"company_id": "abc"}, id="company-id-text"),
        pytest.param({"source": "yclients", "payload": [1], "request_id": {"a": 1}}, id="other-argument-names"),
    ],
)
@pytest.mark.parametrize("token", [PARTNER_TOKEN, "wrong-token"])
def test_keys_of_a_rejected_body_are_stored_as_data_never_used_as_arguments(
    lifecycle_app, company_factory, extra, token
):
    other = company_factory()
    body = {**_body(10**12, "freeze", token), **extra}  # an unknown salon (or a wrong token): rejected
    with lifecycle_app.test_client() as c:
        response = c.post("/marketplace/webhook/yclients", json=body)
    assert response.status_code == (200 if token == PARTNER_TOKEN else 401)
    with lifecycle_app.app_context():
        [event] = _events()
        assert (event.status, event.company_id, event.source) == (EventStatus.REJECTED, None, "lifecycle")
        assert event.reject_reason == ("unknown salon" if token == PARTNER_TOKEN else "invalid partner token")
        assert set(event.payload) == {"excerpt"} and token not in event.payload["excerpt"]
        assert json.loads(event.payload["excerpt"]) == {k: v for k, v in body.items() if k != "partner_token"}
        assert db.session.get(Company, other.id) is not None
