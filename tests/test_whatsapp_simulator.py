"""The WhatsApp session flow on the simulator, through real workers: QR, rotation, expiry, scan,
the 515 restart, WORKING → connected + activation callback, pairing codes, disconnect codes."""

from __future__ import annotations

import base64
import re
from collections.abc import Iterator

import pytest

from models import CompanyEvent, SessionStatus, WhatsAppSession, db
from services.whatsapp import gateway
from tests.factories import make_company, reread_company
from tests.support import free_port, wait_until
from tests.whatsapp_stack import Stack, collect, events_named, start_stack

QR_STRING = re.compile(r"^2@[A-Za-z0-9+/=]+(,[A-Za-z0-9+/=]+){3}$")


@pytest.fixture(scope="module")
def stack(make_app, backends, service_env, run_dir) -> Iterator[Stack]:
    started = start_stack(make_app, backends, service_env, run_dir)
    yield started
    started.stop()


@pytest.fixture
def sim(stack: Stack) -> Iterator[Stack]:
    with stack.app.app_context():
        yield stack
    db.session.remove()
    stack.clean()


def _session(company_id: int) -> WhatsAppSession | None:
    db.session.expire_all()
    return db.session.query(WhatsAppSession).filter_by(company_id=company_id).first()


def _first_qr(sim: Stack, token: str) -> dict:
    response = sim.app.test_client().get(f"/marketplace/qr/{token}")
    assert response.status_code == 200, response.get_json()
    return response.get_json()


def test_qr_endpoint_answers_a_png_data_uri_with_the_seconds_left(sim):
    company = make_company()
    body = _first_qr(sim, company.token)
    assert set(body) == {"success", "qr", "expires_in"} and body["success"] is True
    assert body["qr"].startswith("data:image/png;base64,")
    assert base64.b64decode(body["qr"].split(",", 1)[1])[:8] == b"\x89PNG\r\n\x1a\n"
    assert 0 < body["expires_in"] <= 3
    assert reread_company(company.id).integration_status == "connecting"
    code = gateway.gateway().qr(gateway.session_name(company.id))
    assert code is not None and QR_STRING.match(code.value)
    # The same live QR is served again (from the cache) with less time left, not a new one.
    again = _first_qr(sim, company.token)
    assert again["qr"] == body["qr"] and again["expires_in"] <= body["expires_in"]
    assert db.session.query(CompanyEvent).filter_by(company_id=company.id, kind="qr_issued").count() == 1


def test_qr_endpoint_rejects_a_bad_token(sim):
    response = sim.app.test_client().get("/marketplace/qr/not-a-token")
    assert response.status_code == 401
    assert response.get_json() == {"success": False, "error": "Недействительный токен"}


def test_qr_endpoint_answers_500_when_no_qr_arrives_in_time(make_app, ctx):
    # A namespace no worker listens to: the start task is never run.
    app = make_app(redis_namespace=f"nobody{free_port()}", qr_wait_seconds=0.3)
    with app.app_context():
        company = make_company()
        response = app.test_client().get(f"/marketplace/qr/{company.token}")
    assert response.status_code == 500
    assert response.get_json() == {"success": False, "error": "Не удалось сгенерировать QR-код"}


def test_qr_rotates_then_the_attempt_expires_and_a_new_one_can_start(sim):
    company = make_company()
    received, unsubscribe = collect(sim.app, company.id)
    try:
        first = _first_qr(sim, company.token)
        # 3 s, then 2 s, then 2 s: three codes, then FAILED with qr_timeout.
        wait_until(lambda: events_named(received, "whatsapp.disconnected"), timeout=15)
        qrs = events_named(received, "qr")
        assert [q["companyId"] for q in qrs] == [company.id] * 3
        assert len({q["qr"] for q in qrs}) == 3 and qrs[0]["qr"] == first["qr"]
        assert [q["expires_in"] for q in qrs] == [3, 2, 2]
        assert events_named(received, "whatsapp.disconnected") == [{"companyId": company.id, "reason": "qr_timeout"}]
        row = _session(company.id)
        assert row is not None and row.status == SessionStatus.FAILED and row.failure_reason == "qr_timeout"
        assert row.qr_count == 3
        # Asking again starts a fresh attempt.
        fresh = _first_qr(sim, company.token)
        assert fresh["qr"] not in {q["qr"] for q in qrs}
        assert _session(company.id).attempt == 2  # type: ignore[union-attr]
    finally:
        unsubscribe()


def test_scan_restarts_then_connects_and_sends_the_activation_callback(sim):
    company = make_company(phone="+79990001122")
    received, unsubscribe = collect(sim.app, company.id)
    try:
        _first_qr(sim, company.token)
        assert gateway.simulate_scan(company.id, "+7 900 123-45-67") == "79001234567"
        wait_until(lambda: events_named(received, "whatsapp.connected"), timeout=10)
        assert events_named(received, "whatsapp.connected") == [{"phone": "+79001234567", "companyId": company.id}]
        row = _session(company.id)
        assert row is not None and row.status == SessionStatus.WORKING and row.last_disconnect_code == 515
        saved = reread_company(company.id)
        assert saved.whatsapp_phone == "+79001234567" and saved.whatsapp_connected_at is not None
        # The callback went to YClients, which accepted it: the company is active.
        wait_until(lambda: reread_company(company.id).integration_status == "active", timeout=10)
        calls = sim.yclients.callbacks_for(company.salon_id)
        assert len(calls) == 1 and calls[0].body["salon_id"] == company.salon_id
        kinds = [e.kind for e in db.session.query(CompanyEvent).filter_by(company_id=company.id)]
        assert "connected" in kinds and "activated" in kinds
        # Once connected, /qr says so instead of handing out a QR.
        body = _first_qr(sim, company.token)
        assert body["success"] is True and body["connected"] is True and "qr" not in body
        assert body["whatsapp_phone"] == "+79001234567"
    finally:
        unsubscribe()


def test_scan_without_a_waiting_session_is_a_conflict(sim):
    company = make_company()
    response = sim.app.test_client().post(f"/marketplace/simulator/scan/{company.token}", json={})
    assert response.status_code == 409
    assert response.get_json()["success"] is False


def test_pairing_code_links_by_phone_number(sim):
    company = make_company()
    client = sim.app.test_client()
    bad = client.post(f"/marketplace/pairing-code/{company.token}", json={"phone": "12-34"})
    assert bad.status_code == 400 and bad.get_json()["success"] is False
    assert client.post("/marketplace/pairing-code/bad-token", json={"phone": "+79001234567"}).status_code == 401
    response = client.post(f"/marketplace/pairing-code/{company.token}", json={"phone": "+7 (900) 555-66-77"})
    body = response.get_json()
    assert response.status_code == 200, body
    assert set(body) == {"success", "code", "expires_in"}
    assert re.fullmatch(r"[1-9A-HJ-NP-TV-Z]{4}-[1-9A-HJ-NP-TV-Z]{4}", body["code"])
    # The code lives as long as the attempt: at most 3 + 2 + 2 seconds.
    assert 0 < body["expires_in"] <= 7
    assert _session(company.id).pairing_phone == "+79005556677"  # type: ignore[union-attr]
    # Typing the code on the phone links that phone.
    gateway.simulate_scan(company.id)
    wait_until(lambda: reread_company(company.id).whatsapp_phone == "+79005556677", timeout=10)
    again = client.post(f"/marketplace/pairing-code/{company.token}", json={"phone": "+79005556677"})
    assert again.status_code == 409


def _connected(sim: Stack) -> tuple[int, list[dict]]:
    company = make_company()
    received, _unsubscribe = collect(sim.app, company.id)
    _first_qr(sim, company.token)
    gateway.simulate_scan(company.id, "+79001234567")
    wait_until(lambda: reread_company(company.id).integration_status == "active", timeout=10)
    return company.id, received


@pytest.mark.parametrize(("code", "reason"), [(401, "logged_out"), (403, "forbidden"), (406, "banned"),
                                               (402, "temporary_ban")])
def test_terminal_disconnects_do_not_reconnect(sim, code, reason):
    company_id, received = _connected(sim)
    gateway.simulate_disconnect(company_id, code)
    wait_until(lambda: reread_company(company_id).integration_status == "disconnected", timeout=10)
    # Published after the commit: the event may arrive a moment after the row changed.
    wait_until(lambda: {"companyId": company_id, "reason": reason} in events_named(received, "whatsapp.disconnected"))
    row = _session(company_id)
    assert row is not None and row.status == SessionStatus.FAILED and row.failure_reason == reason
    assert row.reconnect_attempts == 0 and row.last_disconnect_code == code
    assert db.session.query(CompanyEvent).filter_by(company_id=company_id, kind="disconnected").count() == 1


def test_replaced_session_stops_without_fighting(sim):
    company_id, received = _connected(sim)
    gateway.simulate_disconnect(company_id, 440)
    wait_until(lambda: _session(company_id).status == SessionStatus.STOPPED, timeout=10)  # type: ignore[union-attr]
    replaced = {"companyId": company_id, "reason": "replaced"}
    wait_until(lambda: replaced in events_named(received, "whatsapp.disconnected"))
    assert reread_company(company_id).integration_status == "disconnected"


def test_transient_disconnect_reconnects_with_backoff_and_keeps_the_company_active(sim):
    company_id, received = _connected(sim)
    connected_before = len(events_named(received, "whatsapp.connected"))
    gateway.simulate_disconnect(company_id, 428)
    wait_until(lambda: len(events_named(received, "whatsapp.connected")) > connected_before, timeout=10)
    row = _session(company_id)
    assert row is not None and row.status == SessionStatus.WORKING and row.reconnect_attempts == 0
    assert reread_company(company_id).integration_status == "active"
    # Healed within the debounce window: no disconnect was announced, none recorded.
    assert events_named(received, "whatsapp.disconnected") == []
    assert db.session.query(CompanyEvent).filter_by(company_id=company_id, kind="disconnected").count() == 0
    # Only one activation callback in all.
    assert len(sim.yclients.callbacks_for(reread_company(company_id).salon_id)) == 1


def test_logout_and_stop_tasks_end_the_session(sim):
    company_id, received = _connected(sim)
    celery = sim.app.extensions["celery"]
    assert celery.send_task("whatsapp.stop_session", args=[company_id]).get(timeout=10) == "stopped"
    assert _session(company_id).status == SessionStatus.STOPPED  # type: ignore[union-attr]
    assert celery.send_task("whatsapp.logout", args=[company_id]).get(timeout=10) == "logged_out"
    info = gateway.gateway().info(gateway.session_name(company_id))
    assert info.status == "STOPPED" and info.phone is None
    # Published after each task's commit: the bus may bring the second a moment after its task's result.
    wait_until(lambda: [d["reason"] for d in events_named(received, "whatsapp.disconnected")] == ["stopped",
                                                                                               "logged_out"])


def test_connect_page_checks_the_token_and_ids(sim):
    company = make_company()
    client = sim.app.test_client()
    url = f"/marketplace/connect?token={company.token}&company={company.id}&salon={company.salon_id}"
    page = client.get(url)
    assert page.status_code == 200 and page.mimetype == "text/html"
    html = page.get_data(as_text=True)
    assert "Подключение WhatsApp" in html and 'id="simulate-scan"' in html and "connect.js" in html
    for bad in (f"/marketplace/connect?token=nope&company={company.id}&salon={company.salon_id}",
                f"/marketplace/connect?token={company.token}&company={company.id + 1}&salon={company.salon_id}",
                f"/marketplace/connect?token={company.token}&company={company.id}&salon=1"):
        response = client.get(bad)
        assert response.status_code == 401 and "Недействительный токен" in response.get_data(as_text=True)
