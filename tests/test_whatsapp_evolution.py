"""The Evolution API adapter end to end: our worker drives a local server behaving as Evolution API v2 does,
which POSTs its (unsigned) events to the company's secret URL at our gunicorn."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
import requests

from models import CompanyEvent, SessionStatus, db
from services.access.webhook_secrets import gateway_events_url
from tests.factories import make_company, reread_company, reread_session
from tests.fakes.evolution import API_KEY, FakeEvolution
from tests.support import wait_until
from tests.whatsapp_stack import Stack, start_stack

DEBOUNCE = 2.0


@pytest.fixture(scope="module")
def evolution() -> Iterator[FakeEvolution]:
    fake = FakeEvolution(qr_limit=4).start()
    yield fake
    fake.stop()


@pytest.fixture(scope="module")
def stack(make_app, backends, service_env, run_dir, evolution) -> Iterator[Stack]:
    started = start_stack(make_app, backends, service_env, run_dir, web=True, WHATSAPP_GATEWAY="evolution",
                          EVOLUTION_URL=evolution.url, EVOLUTION_API_KEY=API_KEY,
                          WHATSAPP_DISCONNECT_DEBOUNCE_SECONDS=str(DEBOUNCE))
    yield started
    started.stop()


@pytest.fixture
def live(stack: Stack, evolution: FakeEvolution) -> Iterator[Stack]:
    with stack.app.app_context():
        yield stack
    db.session.remove()
    stack.clean()
    evolution.instances.clear()  # company ids start again at 1 in the next test


def _linked(live: Stack, evolution: FakeEvolution) -> tuple[int, int]:
    company = make_company()
    response = requests.get(f"{live.base_url}/marketplace/qr/{company.token}", timeout=20)
    assert response.status_code == 200, response.text
    evolution.scan(f"company-{company.id}", "79001112233")
    wait_until(lambda: reread_company(company.id).integration_status == "active", timeout=10)
    return company.id, company.salon_id


def test_qr_scan_and_connect_through_evolution(live, evolution):
    company = make_company()
    name = f"company-{company.id}"
    body = requests.get(f"{live.base_url}/marketplace/qr/{company.token}", timeout=20).json()
    assert body["success"] is True and body["qr"].startswith("data:image/png;base64,")
    hook = evolution.instances[name].webhook
    assert hook["url"] == gateway_events_url(company.id)
    assert hook["events"] == ["QRCODE_UPDATED", "CONNECTION_UPDATE", "MESSAGES_UPSERT", "MESSAGES_UPDATE"]
    assert hook["byEvents"] is False and hook["enabled"] is True
    evolution.new_qr(name)
    wait_until(lambda: reread_session(company.id).qr_count == 2, timeout=10)
    evolution.scan(name, "79001112233")
    wait_until(lambda: reread_company(company.id).integration_status == "active", timeout=10)
    assert reread_company(company.id).whatsapp_phone == "+79001112233"
    assert len(live.yclients.callbacks_for(company.salon_id)) == 1


def test_a_silent_reconnect_is_no_disconnect_and_sends_no_second_callback(live, evolution):
    company_id, salon_id = _linked(live, evolution)
    evolution.drop(f"company-{company_id}", 428)  # Evolution reconnects by itself: connecting, then open
    time.sleep(DEBOUNCE + 1)
    # On a busy machine the worker may still be applying "connecting" then "open": wait for the outcome.
    wait_until(lambda: reread_session(company_id).status == SessionStatus.WORKING, timeout=15)
    assert reread_company(company_id).integration_status == "active"
    assert db.session.query(CompanyEvent).filter_by(company_id=company_id, kind="disconnected").count() == 0
    assert len(live.yclients.callbacks_for(salon_id)) == 1


def test_a_logged_out_phone_is_a_terminal_disconnect(live, evolution):
    company_id, _ = _linked(live, evolution)
    evolution.drop(f"company-{company_id}", 401)
    wait_until(lambda: reread_company(company_id).integration_status == "disconnected", timeout=10)
    row = reread_session(company_id)
    assert (row.status, row.failure_reason, row.last_disconnect_code) == (SessionStatus.FAILED, "logged_out", 401)


def test_the_qr_limit_ends_the_attempt(live, evolution):
    company = make_company()
    name = f"company-{company.id}"
    requests.get(f"{live.base_url}/marketplace/qr/{company.token}", timeout=20)
    for _ in range(4):
        evolution.new_qr(name)
    wait_until(lambda: reread_session(company.id).status == SessionStatus.FAILED, timeout=10)
    assert reread_session(company.id).failure_reason == "qr_timeout"


def test_events_with_a_wrong_secret_are_refused(live, evolution):
    company = make_company()
    body = {"event": "connection.update", "instance": f"company-{company.id}",
            "data": {"state": "open", "wuid": "79990000000@s.whatsapp.net", "statusReason": 200}}
    url = f"{live.base_url}/marketplace/whatsapp/events/{company.id}"
    for secret in ("", "wrong", gateway_events_url(company.id + 1).rsplit("=", 1)[1]):
        assert requests.post(url, params={"secret": secret}, json=body, timeout=5).status_code == 401
    response = requests.post(gateway_events_url(company.id), json=body, timeout=5)
    assert response.status_code == 200 and response.json() == {"success": True}
    wait_until(lambda: reread_company(company.id).whatsapp_phone == "+79990000000", timeout=10)
