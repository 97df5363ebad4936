""""Is WhatsApp linked" has one answer: REST status, the socket snapshot and the QR endpoint agree."""

from __future__ import annotations

import time

from models import Company, IntegrationStatus, SessionStatus, WhatsAppSession, db
from services.whatsapp import session_events, sessions
from tests.factories import make_company


def _linked_but_refused_by_yclients() -> tuple[int, str, str]:
    made = make_company(status=IntegrationStatus.ACTIVATION_FAILED, whatsapp_phone="+79001234567")
    db.session.add(WhatsAppSession(company_id=made.id, gateway_session=f"company-{made.id}",
                                   status=SessionStatus.WORKING, attempt=1, qr_count=1, reconnect_attempts=0))
    db.session.commit()
    return made.id, made.api_key, made.token


def test_after_yclients_refused_the_callback_every_view_says_linked(client, ctx):
    company_id, api_key, token = _linked_but_refused_by_yclients()
    status = client.get(f"/marketplace/status/{company_id}", headers={"X-API-Key": api_key}).get_json()
    assert status["whatsapp_connected"] is True and status["integration_status"] == "activation_failed"
    assert sessions.snapshot(company_id)["whatsapp_connected"] is True
    started = time.monotonic()
    qr = client.get(f"/marketplace/qr/{token}")
    assert qr.status_code == 200 and qr.get_json()["connected"] is True
    assert qr.get_json()["whatsapp_phone"] == "+79001234567"
    assert time.monotonic() - started < 2  # answered at once, not after waiting for a QR that never comes


def test_when_the_session_drops_every_view_says_not_linked(client, ctx):
    company_id, api_key, _token = _linked_but_refused_by_yclients()
    event = {"id": "evt_1", "timestamp": int(time.time() * 1000), "event": "session.status",
             "session": f"company-{company_id}", "payload": {"status": "FAILED", "code": 401}}
    assert session_events.handle_event(event) == "logged_out"
    db.session.commit()
    assert db.session.get(Company, company_id).integration_status == IntegrationStatus.DISCONNECTED
    status = client.get(f"/marketplace/status/{company_id}", headers={"X-API-Key": api_key}).get_json()
    assert status["whatsapp_connected"] is False
    assert sessions.snapshot(company_id)["whatsapp_connected"] is False
