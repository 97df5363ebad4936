"""The partner API client against a local server that answers as YClients does."""

from __future__ import annotations

import time

import pytest

from integrations.yclients import ACCEPT, Outcome, YClientsPartnerClient, classify
from tests.fakes import yclients as fy


@pytest.fixture
def fake(fake_yclients):
    fake_yclients.reset()
    yield fake_yclients
    fake_yclients.reset()


def _send(fake, salon_id=1, timeout=2.0, token=fy.PARTNER_TOKEN):
    client = YClientsPartnerClient(fake.url + "/", token, timeout)
    return client.send_callback(salon_id, fy.APPLICATION_ID, "sk_key", ["https://example.test/hook"])


def test_the_callback_request_is_shaped_as_yclients_expects(fake):
    response = _send(fake, salon_id=11)
    assert response.outcome is Outcome.ACCEPTED and response.http_status == 201
    [call] = fake.calls_for(11)
    assert call.method == "POST" and call.path == "/marketplace/partner/callback"
    assert call.headers["Authorization"] == f"Bearer {fy.PARTNER_TOKEN}"
    assert call.headers["Accept"] == ACCEPT
    assert call.body == {"salon_id": 11, "application_id": fy.APPLICATION_ID, "api_key": "sk_key",
                         "webhook_urls": ["https://example.test/hook"]}


@pytest.mark.parametrize(
    ("reply", "outcome", "status", "message"),
    [
        (fy.created(), Outcome.ACCEPTED, 201, "HTTP 201"),
        (fy.redirect_html(), Outcome.ACCEPTED, 301, "HTTP 301"),
        (fy.already_installed(), Outcome.ACCEPTED, 403, "Пользователь уже установил это приложение"),
        (fy.unauthorized(), Outcome.REJECTED, 401, "Необходима авторизация"),
        (fy.unprocessable("Неверный api_key"), Outcome.REJECTED, 422, "Неверный api_key"),
        (fy.bad_request(), Outcome.REJECTED, 400, "Агрегатор не найден"),
        (fy.server_error(), Outcome.RETRY, 500, "HTTP 500"),
        (fy.too_many(), Outcome.RETRY, 429, "Too Many Requests"),
    ],
)
def test_answers_are_classified(fake, reply, outcome, status, message):
    fake.script(12, reply)
    response = _send(fake, salon_id=12)
    assert (response.outcome, response.http_status, response.message) == (outcome, status, message)


def test_the_301_is_not_followed(fake):
    fake.script(13, fy.redirect_html())
    response = _send(fake, salon_id=13)
    assert response.outcome is Outcome.ACCEPTED and "<html>" in response.excerpt
    assert len(fake.requests) == 1  # the Location was not fetched


def test_a_slow_answer_times_out_as_retry(fake):
    fake.script(14, fy.slow(5))
    started = time.monotonic()
    response = _send(fake, salon_id=14, timeout=0.3)
    assert time.monotonic() - started < 2
    assert response.outcome is Outcome.RETRY and response.http_status is None
    assert "не ответил" in response.message


def test_an_unreachable_api_is_retry():
    from tests.support import free_port

    client = YClientsPartnerClient(f"http://127.0.0.1:{free_port()}", "t", 1)
    response = client.send_callback(1, 1, "sk", [])
    assert response.outcome is Outcome.RETRY and "недоступен" in response.message


def test_a_wrong_partner_token_is_rejected(fake):
    response = _send(fake, salon_id=15, token="wrong")
    assert response.outcome is Outcome.REJECTED and response.http_status == 401


def test_a_403_that_is_not_already_installed_is_a_rejection():
    assert classify(403, '{"success": false, "meta": {"message": "Доступ запрещён"}}').outcome is Outcome.REJECTED
    assert classify(403, "<html>Forbidden</html>").outcome is Outcome.REJECTED


def _installation(fake, salon_id, token=fy.PARTNER_TOKEN, application_id=fy.APPLICATION_ID):
    return YClientsPartnerClient(fake.url, token, 2.0).installation(salon_id, application_id)


@pytest.mark.parametrize(("status", "installed"), [("pending", True), ("active", True), ("freezed", False)])
def test_the_installation_status_is_read_from_connection_status(fake, status, installed):
    fake.install(21, status)
    found = _installation(fake, 21)
    assert (found.status, found.installed, found.response.http_status) == (status, installed, 200)
    [call] = fake.calls_for(21)
    assert call.method == "GET" and call.path == f"/marketplace/salon/21/application/{fy.APPLICATION_ID}"
    assert call.headers["Authorization"] == f"Bearer {fy.PARTNER_TOKEN}" and call.headers["Accept"] == ACCEPT


def test_a_salon_without_the_application_is_not_installed(fake):
    fake.install(22, "active", application_id=fy.APPLICATION_ID + 1)  # another application of ours
    found = _installation(fake, 22)
    assert not found.installed and found.status is None
    assert found.response.outcome is Outcome.REJECTED and found.response.http_status == 404


def test_installation_answers_without_a_valid_token_or_with_a_failure_are_not_installations(fake):
    fake.install(23, "active")
    refused = _installation(fake, 23, token="wrong")
    assert (refused.installed, refused.response.http_status, refused.response.message) == (
        False, 401, "Authentication needed.")
    fake.script(23, fy.server_error())
    failed = _installation(fake, 23)
    assert not failed.installed and failed.response.outcome is Outcome.RETRY
