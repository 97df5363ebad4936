"""The WAHA adapter end to end: our worker drives a local server behaving as WAHA does, which POSTs its
events to the company's secret URL at our gunicorn; a scan there connects the company (WAHA Plus, signed
events with ids; WAHA Core's one session ``default`` is held to it in tests/test_waha_core.py)."""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from collections.abc import Iterator

import pytest
import requests

from models import Company, CompanyEvent, SessionStatus, WhatsAppSession, db
from services.access.webhook_secrets import gateway_events_url
from tests.factories import make_company, reread_company, reread_session
from tests.fakes.waha import API_KEY, FakeWaha
from tests.support import wait_until
from tests.whatsapp_stack import Stack, start_stack

HMAC_KEY = "waha-hmac-test-key"


@pytest.fixture(scope="module")
def waha() -> Iterator[FakeWaha]:
    fake = FakeWaha().start()
    yield fake
    fake.stop()


@pytest.fixture(scope="module")
def stack(make_app, backends, service_env, run_dir, waha) -> Iterator[Stack]:
    started = start_stack(make_app, backends, service_env, run_dir, web=True, WHATSAPP_GATEWAY="waha",
                          WAHA_URL=waha.url, WAHA_API_KEY=API_KEY, WAHA_WEBHOOK_HMAC_KEY=HMAC_KEY,
                          WHATSAPP_DISCONNECT_DEBOUNCE_SECONDS="2")
    yield started
    started.stop()


@pytest.fixture
def live(stack: Stack, waha: FakeWaha) -> Iterator[Stack]:
    with stack.app.app_context():
        yield stack
    db.session.remove()
    stack.clean()
    waha.sessions.clear()  # company ids start again at 1 in the next test


def test_qr_scan_and_connect_through_waha(live, waha):
    company = make_company()
    session_name = f"company-{company.id}"
    response = requests.get(f"{live.base_url}/marketplace/qr/{company.token}", timeout=15)
    body = response.json()
    assert response.status_code == 200, body
    assert body["qr"].startswith("data:image/png;base64,") and 0 < body["expires_in"] <= 60
    # The session was created with the company's secret URL, signed as well.
    hook = waha.sessions[session_name].webhooks[0]
    assert hook == {"url": gateway_events_url(company.id), "events": ["session.status", "message", "message.ack"],
                    "hmac": {"key": HMAC_KEY}}
    assert hook["url"].startswith(f"{live.base_url}/marketplace/whatsapp/events/{company.id}?secret=")
    # A rotation: WAHA re-sends SCAN_QR_CODE, a new QR is served.
    waha.new_qr(session_name)
    wait_until(lambda: requests.get(f"{live.base_url}/marketplace/qr/{company.token}", timeout=15).json()["qr"]
               != body["qr"], timeout=10)
    # Pairing code through WAHA's request-code.
    code = requests.post(f"{live.base_url}/marketplace/pairing-code/{company.token}",
                         json={"phone": "+7 900 111-22-33"}, timeout=20).json()
    assert code["success"] is True and code["code"] == "ABCD-EFGH" and code["expires_in"] > 0
    assert waha.sessions[session_name].pairing == ["79001112233"]
    waha.scan(session_name, "79001112233")
    wait_until(lambda: reread_company(company.id).integration_status == "active", timeout=10)
    saved = reread_company(company.id)
    assert saved.whatsapp_phone == "+79001112233"
    row = db.session.query(WhatsAppSession).filter_by(company_id=company.id).one()
    assert row.status == SessionStatus.WORKING and row.qr_count == 2
    assert len(live.yclients.callbacks_for(company.salon_id)) == 1


def test_logout_task_deletes_the_session_at_waha(live, waha):
    """WAHA's logout would start a new login on a running session: unlinking is DELETE."""
    company = make_company()
    requests.get(f"{live.base_url}/marketplace/qr/{company.token}", timeout=15)
    celery = live.app.extensions["celery"]
    assert celery.send_task("whatsapp.logout", args=[company.id]).get(timeout=10) == "logged_out"
    assert ("DELETE", f"/api/sessions/company-{company.id}") in waha.calls
    assert ("POST", f"/api/sessions/company-{company.id}/logout") not in waha.calls
    assert f"company-{company.id}" not in waha.sessions


def test_a_failure_that_heals_within_the_debounce_is_no_disconnect(live, waha):
    company = make_company()
    requests.get(f"{live.base_url}/marketplace/qr/{company.token}", timeout=15)
    name = f"company-{company.id}"
    waha.scan(name, "79001112233")
    wait_until(lambda: reread_company(company.id).integration_status == "active", timeout=10)
    waha.fail(name)  # WAHA reports FAILED with no code, then restarts by itself
    wait_until(lambda: reread_session(company.id).status == SessionStatus.FAILED, timeout=10)
    waha.recover(name)
    wait_until(lambda: reread_session(company.id).status == SessionStatus.WORKING, timeout=10)
    time.sleep(float(live.env["WHATSAPP_DISCONNECT_DEBOUNCE_SECONDS"]) + 1)
    assert reread_company(company.id).integration_status == "active"
    assert db.session.query(CompanyEvent).filter_by(company_id=company.id, kind="disconnected").count() == 0
    assert len(live.yclients.callbacks_for(company.salon_id)) == 1  # no second activation callback


def test_a_failure_that_lasts_is_a_disconnect(live, waha):
    company = make_company()
    requests.get(f"{live.base_url}/marketplace/qr/{company.token}", timeout=15)
    name = f"company-{company.id}"
    waha.scan(name, "79001112233")
    wait_until(lambda: reread_company(company.id).integration_status == "active", timeout=10)
    waha.fail(name)
    wait_until(lambda: reread_company(company.id).integration_status == "disconnected", timeout=15)
    assert db.session.query(CompanyEvent).filter_by(company_id=company.id, kind="disconnected").count() == 1


def test_events_of_an_uninstalled_company_never_revive_its_session(live, waha):
    company = make_company()
    requests.get(f"{live.base_url}/marketplace/qr/{company.token}", timeout=15)
    name = f"company-{company.id}"
    db.session.get(Company, company.id).integration_status = "uninstalled"
    db.session.commit()
    waha.scan(name, "79001112233")
    time.sleep(1.5)
    assert reread_session(company.id).status != SessionStatus.WORKING
    assert reread_company(company.id).whatsapp_phone is None
    # The session alive at the gateway is ended again.
    wait_until(lambda: name not in waha.sessions, timeout=10)


def test_events_with_a_wrong_or_missing_signature_are_refused(live):
    company = make_company()
    event = {"id": "evt_1", "timestamp": int(time.time() * 1000), "event": "session.status",
             "session": f"company-{company.id}",
             "me": {"id": "79990000000@c.us"}, "payload": {"status": "WORKING"}}
    raw = json.dumps(event).encode()
    url = f"{live.base_url}/marketplace/whatsapp/events"
    wrong = hmac.new(b"other-key", raw, hashlib.sha512).hexdigest()
    for headers in ({}, {"X-Webhook-Hmac": wrong}):
        response = requests.post(url, data=raw, headers={"Content-Type": "application/json", **headers}, timeout=5)
        assert response.status_code == 401
    right = hmac.new(HMAC_KEY.encode(), raw, hashlib.sha512).hexdigest()
    response = requests.post(url, data=raw, headers={"Content-Type": "application/json", "X-Webhook-Hmac": right},
                             timeout=5)
    assert response.status_code == 200 and response.json() == {"success": True}
    wait_until(lambda: reread_company(company.id).whatsapp_phone == "+79990000000", timeout=10)
