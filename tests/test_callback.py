"""The activation callback: one attempt against the fake YClients, the task in a real worker, the endpoint."""

from __future__ import annotations

from datetime import timedelta

import pytest

from models import ApiKey, Callback, CallbackStatus, Company, CompanyEvent, IntegrationStatus, db, utcnow
from services.access import api_keys
from services.callbacks import activation
from services.platform import jobs
from tests.fakes import yclients as fy
from tests.support import wait_until


@pytest.fixture
def fake(fake_yclients):
    fake_yclients.reset()
    yield fake_yclients
    fake_yclients.reset()


@pytest.fixture
def linked(company_factory):
    """A company whose WhatsApp is linked (the state the callback follows)."""
    return company_factory(status=IntegrationStatus.CONNECTED, whatsapp_phone="+79001234567")


def _company(company_id: int) -> Company:
    company = db.session.get(Company, company_id, populate_existing=True)
    db.session.commit()
    assert company is not None
    return company


def _rows(company_id: int) -> list[Callback]:
    rows = db.session.query(Callback).filter_by(company_id=company_id).order_by(Callback.id).all()
    db.session.commit()
    return rows


def _kinds(company_id: int) -> list[str]:
    return [e.kind for e in db.session.query(CompanyEvent).filter_by(company_id=company_id).order_by(CompanyEvent.id)]


# --- one attempt (the service the task runs), in this process ---------------------------------------------


def test_an_accepted_callback_activates_the_company(ctx, fake, linked):
    assert activation.attempt_callback(linked.id) is None
    [call] = fake.callbacks_for(linked.salon_id)
    assert call.path == "/marketplace/partner/callback"
    assert call.headers["Authorization"] == f"Bearer {fy.PARTNER_TOKEN}"
    assert call.headers["Accept"] == "application/vnd.yclients.v2+json"
    assert call.body["application_id"] == fy.APPLICATION_ID and call.body["webhook_urls"] == [linked.webhook_url]
    principal = api_keys.authenticate(call.body["api_key"])
    assert principal is not None and principal.company_id == linked.id
    assert db.session.query(ApiKey).filter_by(company_id=linked.id, label="yclients").count() == 1

    [row] = _rows(linked.id)
    assert (row.status, row.attempts, row.http_status) == (CallbackStatus.SENT, 1, 201) and row.sent_at
    company = _company(linked.id)
    assert company.integration_status == IntegrationStatus.ACTIVE and company.activated_at == row.sent_at
    assert _kinds(linked.id)[-2:] == ["key_rotated", "activated"]


@pytest.mark.parametrize("reply", [fy.redirect_html(), fy.already_installed()], ids=["301-html", "403-installed"])
def test_301_and_already_installed_count_as_accepted(ctx, fake, linked, reply):
    fake.script(linked.salon_id, reply)
    assert activation.attempt_callback(linked.id) is None
    assert _rows(linked.id)[0].status == CallbackStatus.SENT
    assert _company(linked.id).integration_status == IntegrationStatus.ACTIVE


@pytest.mark.parametrize(
    ("reply", "message"),
    [(fy.unauthorized(), "Необходима авторизация"), (fy.unprocessable("Неверный api_key"), "Неверный api_key"),
     (fy.bad_request(), "Агрегатор не найден")],
    ids=["401", "422", "400"],
)
def test_a_rejection_is_final_and_marks_activation_failed(ctx, fake, linked, reply, message):
    fake.script(linked.salon_id, reply)
    assert activation.attempt_callback(linked.id) is None
    [row] = _rows(linked.id)
    assert (row.status, row.error, row.attempts) == (CallbackStatus.REJECTED, message, 1)
    assert _company(linked.id).integration_status == IntegrationStatus.ACTIVATION_FAILED
    assert _kinds(linked.id)[-1] == "activation_failed"
    assert len(fake.callbacks_for(linked.salon_id)) == 1


def test_transient_failures_are_retried_with_the_same_key_then_succeed(ctx, fake, linked):
    fake.script(linked.salon_id, fy.server_error(), fy.too_many(), fy.slow(5))
    delays = [activation.attempt_callback(linked.id) for _ in range(3)]
    assert all(d is not None and 0 < d <= 1 for d in delays)  # base 0.2 s, cap 1 s in the test settings
    [row] = _rows(linked.id)
    assert (row.status, row.attempts) == (CallbackStatus.RETRYING, 3)
    assert "не ответил" in (row.error or "")
    assert activation.attempt_callback(linked.id) is None
    assert _rows(linked.id)[0].status == CallbackStatus.SENT
    sent_keys = {call.body["api_key"] for call in fake.callbacks_for(linked.salon_id)}
    assert len(sent_keys) == 1 and api_keys.authenticate(sent_keys.pop()) is not None


def test_retries_end_dead_after_the_configured_attempts(make_app, fake, company_factory):
    app = make_app(callback_max_attempts=2)
    with app.app_context():
        made = company_factory(status=IntegrationStatus.CONNECTED)
        fake.script(made.salon_id, fy.server_error(), fy.server_error(), fy.created())
        assert activation.attempt_callback(made.id) is not None
        assert activation.attempt_callback(made.id) is None
        [row] = _rows(made.id)
        assert (row.status, row.attempts, row.http_status) == (CallbackStatus.DEAD, 2, 500)
        assert _company(made.id).integration_status == IntegrationStatus.ACTIVATION_FAILED


def test_backoff_grows_exponentially_with_jitter_and_a_cap(make_app):
    app = make_app(callback_retry_base_seconds=10, callback_retry_max_seconds=300)
    with app.app_context():
        for attempt, step in [(1, 10), (2, 20), (3, 40), (6, 300), (12, 300)]:
            delays = {activation.retry_delay(attempt) for _ in range(20)}
            assert all(step / 2 <= d <= step for d in delays) and len(delays) > 1


def test_an_active_company_is_not_called_again_automatically(ctx, fake, linked):
    assert activation.attempt_callback(linked.id) is None
    assert activation.attempt_callback(linked.id) is None
    assert len(fake.callbacks_for(linked.salon_id)) == 1 and len(_rows(linked.id)) == 1


@pytest.mark.parametrize("status", [IntegrationStatus.PENDING, IntegrationStatus.UNINSTALLED])
def test_no_callback_before_whatsapp_is_linked(ctx, fake, company_factory, status):
    made = company_factory(status=status)
    assert activation.attempt_callback(made.id) is None
    assert fake.callbacks_for(made.salon_id) == [] and _rows(made.id) == []


def test_a_new_callback_replaces_the_previous_yclients_key(ctx, fake, linked):
    activation.attempt_callback(linked.id)
    first_key = fake.callbacks_for(linked.salon_id)[0].body["api_key"]
    company = _company(linked.id)
    company.integration_status = IntegrationStatus.ACTIVATION_FAILED
    db.session.commit()
    activation.attempt_callback(linked.id)
    second_key = fake.callbacks_for(linked.salon_id)[1].body["api_key"]
    assert first_key != second_key
    assert api_keys.authenticate(first_key) is None and api_keys.authenticate(second_key) is not None
    assert api_keys.authenticate(linked.api_key) is not None


def test_without_partner_settings_nothing_is_sent(make_app, fake, company_factory):
    app = make_app(yclients_partner_token="")
    with app.app_context():
        made = company_factory(status=IntegrationStatus.CONNECTED)
        assert activation.attempt_callback(made.id) is None
        assert fake.callbacks_for(made.salon_id) == []
        assert _company(made.id).integration_status == IntegrationStatus.CONNECTED


def test_a_callback_whose_task_was_lost_is_sent_again_by_the_sweep(ctx, fake, company_factory, monkeypatch):
    sent: list[int] = []
    monkeypatch.setattr(activation, "enqueue", lambda _name, company_id, **_: sent.append(company_id))
    linked_now = company_factory(status=IntegrationStatus.CONNECTED, whatsapp_connected_at=utcnow())
    linked_before = company_factory(status=IntegrationStatus.CONNECTED,
                                    whatsapp_connected_at=utcnow() - timedelta(minutes=5))
    active = company_factory(status=IntegrationStatus.ACTIVE, whatsapp_connected_at=utcnow() - timedelta(hours=1))
    # The first task, sent when WhatsApp linked, was lost: no callback row; the one linked just now may
    # still have its task on the way.
    assert activation.resend_lost() == [linked_before.id] and sent == [linked_before.id]
    db.session.commit()
    fake.script(linked_before.salon_id, fy.server_error())
    delay = activation.attempt_callback(linked_before.id)
    assert delay is not None  # RETRYING, its retry due after the backoff: not sent again meanwhile
    assert activation.resend_lost() == [] and _rows(linked_before.id)[0].status == CallbackStatus.RETRYING
    [row] = _rows(linked_before.id)
    row.next_attempt_at = utcnow() - timedelta(seconds=jobs.LOST_AFTER_SECONDS + 1)  # and that retry was lost
    db.session.commit()
    assert activation.resend_lost() == [linked_before.id]
    db.session.commit()
    assert activation.resend_lost() == []  # due again from the resend on
    assert activation.attempt_callback(linked_before.id) is None
    assert _company(linked_before.id).integration_status == IntegrationStatus.ACTIVE
    assert _rows(linked_before.id)[0].next_attempt_at is None and activation.resend_lost() == []
    assert fake.callbacks_for(active.salon_id) == [] and fake.callbacks_for(linked_now.salon_id) == []


def test_the_sweep_does_not_make_again_a_callback_that_ended_dead(ctx, fake, company_factory, monkeypatch):
    made = company_factory(status=IntegrationStatus.CONNECTED, whatsapp_connected_at=utcnow() - timedelta(minutes=5))
    db.session.add(Callback(company_id=made.id, status=CallbackStatus.DEAD, created_at=utcnow()))
    db.session.commit()
    monkeypatch.setattr(activation, "enqueue", lambda *_a, **_k: pytest.fail("sent"))
    assert activation.resend_lost() == []


def test_without_partner_settings_the_sweep_sends_nothing(make_app, company_factory, monkeypatch):
    monkeypatch.setattr(activation, "enqueue", lambda *_a, **_k: pytest.fail("sent"))
    with make_app(yclients_partner_token="").app_context():
        company_factory(status=IntegrationStatus.CONNECTED, whatsapp_connected_at=utcnow() - timedelta(hours=1))
        assert activation.resend_lost() == []


# --- the task in a real worker, and the endpoint ---------------------------------------------------------------


def test_the_task_enqueued_by_name_activates_the_company(ctx, worker, fake, linked):
    ctx.extensions["celery"].send_task("yclients.send_callback", args=[linked.id])
    wait_until(lambda: _company(linked.id).integration_status == IntegrationStatus.ACTIVE, timeout=20)
    assert len(fake.callbacks_for(linked.salon_id)) == 1


def test_the_task_retries_in_the_worker_until_yclients_accepts(ctx, worker, fake, linked):
    fake.script(linked.salon_id, fy.server_error(), fy.server_error())
    ctx.extensions["celery"].send_task("yclients.send_callback", args=[linked.id])
    wait_until(lambda: _company(linked.id).integration_status == IntegrationStatus.ACTIVE, timeout=20)
    [row] = _rows(linked.id)
    assert (row.status, row.attempts) == (CallbackStatus.SENT, 3)


def test_endpoint_answers_200_when_yclients_accepts(client, worker, fake, linked):
    body = {"salon_id": linked.salon_id, "company_id": linked.id, "status": "connected",
            "whatsapp_phone": "+79001234567", "api_key": linked.api_key}
    response = client.post("/marketplace/callback", json=body, headers={"X-API-Key": linked.api_key})
    assert response.status_code == 200, response.json
    assert response.json["success"] is True and response.json["message"] == "Callback отправлен"
    assert response.json["data"]["callback_sent_at"].endswith("Z")


def test_endpoint_accepts_the_key_in_the_reference_body(client, worker, fake, linked):
    response = client.post("/marketplace/callback", json={"salon_id": linked.salon_id, "api_key": linked.api_key})
    assert response.status_code == 200, response.json


def test_endpoint_resends_for_an_active_company(client, ctx, worker, fake, linked, admin_headers):
    for _ in range(2):
        response = client.post("/marketplace/callback", json={"company_id": linked.id}, headers=admin_headers)
        assert response.status_code == 200, response.json
    assert len(fake.callbacks_for(linked.salon_id)) == 2


def test_endpoint_answers_502_with_yclients_message_on_rejection(client, worker, fake, linked):
    fake.script(linked.salon_id, fy.unprocessable("Приложение не найдено"))
    response = client.post("/marketplace/callback", json={}, headers={"X-API-Key": linked.api_key})
    assert response.status_code == 502
    assert response.json["success"] is False and response.json["error"] == "Приложение не найдено"
    assert response.json["data"]["status"] == "rejected" and response.json["data"]["http_status"] == 422


def test_endpoint_answers_202_while_retries_continue(make_app, ctx, worker, fake, linked):
    app = make_app(callback_wait_seconds=0.3)
    fake.script(linked.salon_id, fy.slow(1.0, fy.server_error()), fy.server_error())
    response = app.test_client().post("/marketplace/callback", json={}, headers={"X-API-Key": linked.api_key})
    assert response.status_code == 202, response.json
    status_url = response.json["data"]["status_url"]
    assert response.headers["Location"] == status_url
    assert status_url == f"/marketplace/callback/{response.json['data']['callback_id']}"

    def sent():
        state = app.test_client().get(status_url, headers={"X-API-Key": linked.api_key}).json["data"]
        return state["status"] == "sent" and state

    assert wait_until(sent, timeout=20)["attempts"] == 3


@pytest.mark.parametrize(
    ("body", "headers", "status"),
    [
        ({"company_id": 1}, {}, 401),
        ({"company_id": 1, "api_key": "sk_wrong"}, {}, 401),
        ({"company_id": 1}, {"X-API-Key": "sk_wrong"}, 401),
        ({"company_id": 999999}, "admin", 404),
        ({"salon_id": 999999}, "admin", 404),
        ({}, "admin", 400),
        ({"company_id": "x"}, "admin", 400),
        ({"company_id": "other"}, "own", 403),
        ({"salon_id": "other"}, "own", 403),
        ({"company_id": 999999}, "own", 403),
    ],
)
def test_endpoint_access_rules(client, company_factory, admin_headers, body, headers, status):
    own, other = company_factory(status=IntegrationStatus.CONNECTED), company_factory()
    body = {k: (other.id if v == "other" and k == "company_id" else other.salon_id if v == "other" else v)
            for k, v in body.items()}
    headers = admin_headers if headers == "admin" else {"X-API-Key": own.api_key} if headers == "own" else headers
    response = client.post("/marketplace/callback", json=body, headers=headers)
    assert response.status_code == status, response.json
    assert response.json["success"] is False


def test_endpoint_refuses_before_whatsapp_is_linked(client, company_factory):
    made = company_factory()
    response = client.post("/marketplace/callback", json={}, headers={"X-API-Key": made.api_key})
    assert response.status_code == 409 and response.json["integration_status"] == "pending"


def test_callback_status_is_private_to_its_company(app, admin_headers):
    from tests.factories import make_company

    # Set up in a context of its own: requests then get fresh contexts (the principal is cached per context).
    with app.app_context():
        own, other = make_company(), make_company()
        row = Callback(company_id=own.id, status=CallbackStatus.RETRYING, attempts=2)
        db.session.add(row)
        db.session.commit()
        url = f"/marketplace/callback/{row.id}"
    client = app.test_client()
    assert client.get(url).status_code == 401
    # Another company's callback answers exactly as a missing one: ids cannot be probed.
    foreign = client.get(url, headers={"X-API-Key": other.api_key})
    missing = client.get("/marketplace/callback/999999", headers={"X-API-Key": other.api_key})
    assert (foreign.status_code, foreign.json) == (missing.status_code, missing.json) == (
        404, {"success": False, "error": "Callback не найден"})
    assert client.get(url, headers={"X-API-Key": own.api_key}).json["data"]["status"] == "retrying"
    assert client.get(url, headers=admin_headers).status_code == 200
    assert client.get("/marketplace/callback/999999", headers=admin_headers).status_code == 404


def test_callback_outcomes_are_counted_in_the_metrics(ctx, fake, linked, company_factory, admin_headers):
    from tests.test_metrics import scrape, value

    client = ctx.test_client()
    before = scrape(client, admin_headers)
    activation.attempt_callback(linked.id)
    rejected = company_factory(status=IntegrationStatus.CONNECTED, whatsapp_phone="+79001234568")
    fake.script(rejected.salon_id, fy.unauthorized())
    activation.attempt_callback(rejected.id)
    after = scrape(client, admin_headers)
    for outcome in (CallbackStatus.SENT, CallbackStatus.REJECTED):
        counted = value(after, "ycwa_callbacks_total", outcome=outcome) - value(before, "ycwa_callbacks_total",
                                                                                 outcome=outcome)
        assert counted == 1, outcome


def test_without_partner_settings_the_skipped_callback_is_recorded(make_app, company_factory):
    """The embedded default has no YClients to call: the attempt says so in the company's events."""
    app = make_app(yclients_partner_token=None)
    with app.app_context():
        made = company_factory(status=IntegrationStatus.CONNECTED)
        assert activation.attempt_callback(made.id) is None
        assert _kinds(made.id)[-1] == "callback_skipped"
        assert _rows(made.id) == [] and _company(made.id).integration_status == IntegrationStatus.CONNECTED
