"""The WAHA adapter end to end: our worker drives a local server speaking WAHA's API, which POSTs
its signed ``session.status`` events to our gunicorn; a scan there connects the company."""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from collections.abc import Iterator

import pytest
import requests

from models import Company, SessionStatus, WhatsAppSession, db
from tests.factories import make_company
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
                          WAHA_URL=waha.url, WAHA_API_KEY=API_KEY, WAHA_WEBHOOK_HMAC_KEY=HMAC_KEY)
    yield started
    started.stop()


@pytest.fixture
def live(stack: Stack) -> Iterator[Stack]:
    with stack.app.app_context():
        yield stack
    db.session.remove()
    stack.clean()


def _company(company_id: int) -> Company:
    db.session.expire_all()
    company = db.session.get(Company, company_id)
    assert company is not None
    return company


def test_qr_scan_and_connect_through_waha(live, waha):
    company = make_company()
    session_name = f"company-{company.id}"
    response = requests.get(f"{live.base_url}/marketplace/qr/{company.token}", timeout=15)
    body = response.json()
    assert response.status_code == 200, body
    assert body["qr"].startswith("data:image/png;base64,") and 0 < body["expires_in"] <= 60
    # The session was created with our signed webhook.
    hook = waha.sessions[session_name].webhooks[0]
    assert hook == {"url": f"{live.base_url}/marketplace/whatsapp/events", "events": ["session.status"],
                    "hmac": {"key": HMAC_KEY}}
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
    wait_until(lambda: _company(company.id).integration_status == "active", timeout=10)
    saved = _company(company.id)
    assert saved.whatsapp_phone == "+79001112233"
    row = db.session.query(WhatsAppSession).filter_by(company_id=company.id).one()
    assert row.status == SessionStatus.WORKING and row.qr_count == 2
    assert len(live.yclients.calls_for(company.salon_id)) == 1


def test_logout_task_logs_out_at_waha(live, waha):
    company = make_company()
    requests.get(f"{live.base_url}/marketplace/qr/{company.token}", timeout=15)
    celery = live.app.extensions["celery"]
    assert celery.send_task("whatsapp.logout", args=[company.id]).get(timeout=10) == "logged_out"
    assert ("POST", f"/api/sessions/company-{company.id}/logout") in waha.calls


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
    wait_until(lambda: _company(company.id).whatsapp_phone == "+79990000000", timeout=10)
