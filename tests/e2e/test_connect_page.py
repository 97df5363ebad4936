"""The connect page in headless Chromium against gunicorn + a worker with short simulator timings:
QR shown, rotation, expiry and restart, pairing code, the simulator button, the CLI scan, a bad link."""

from __future__ import annotations

import re
import subprocess
import sys
import time
from collections.abc import Iterator

import pytest
from playwright.sync_api import Page, expect

from models import Company, CompanyEvent, db
from tests.support import ROOT, wait_until
from tests.whatsapp_stack import Stack, register, start_stack

# 6 s, then 2 s, then 2 s: an attempt ends after 10 s.
TIMINGS = {"SIMULATOR_QR_FIRST_TTL": "6", "SIMULATOR_QR_TTL": "2", "SIMULATOR_QR_COUNT": "3"}


@pytest.fixture(scope="module")
def stack(make_app, backends, service_env, run_dir) -> Iterator[Stack]:
    started = start_stack(make_app, backends, service_env, run_dir, web=True, **TIMINGS)
    yield started
    started.stop()


def _qr_src(page: Page) -> str:
    image = page.locator("#qr-image")
    expect(image).to_be_visible(timeout=10_000)
    src = image.get_attribute("src") or ""
    assert src.startswith("data:image/png;base64,")
    return src


def test_register_open_the_page_and_a_cli_scan_shows_success_within_two_seconds(stack, page, backends):
    registered = register(stack, 771001)
    page.goto(stack.base_url + registered["connect_url"])
    _qr_src(page)
    expect(page.locator("#state")).to_have_attribute("data-state", "waiting")
    expect(page.locator("#qr-countdown")).to_contain_text("Код действует ещё")
    command = [sys.executable, "-m", "flask", "--app", "wsgi", "whatsapp", "simulate-scan",
               str(registered["company_id"]), "--phone", "+79001234567"]
    result = subprocess.run(command, cwd=ROOT, env=backends.env(**stack.env), capture_output=True, text=True,
                            timeout=60)
    assert result.returncode == 0, result.stderr[-2000:]
    scanned_at = time.monotonic()
    expect(page.locator("#success")).to_be_visible(timeout=2_000)
    assert time.monotonic() - scanned_at < 2.0
    expect(page.locator("#connected-phone")).to_have_text("+79001234567")
    expect(page.locator("#state")).to_have_attribute("data-state", "connected")
    # The activation callback ran: YClients got it and the company is active.
    wait_until(lambda: stack.yclients.callbacks_for(771001), timeout=10)
    with stack.app.app_context():
        def active() -> bool:
            db.session.expire_all()
            company = db.session.get(Company, registered["company_id"])
            return company is not None and company.integration_status == "active"

        wait_until(active, timeout=10)
        kinds = {e.kind for e in db.session.query(CompanyEvent).filter_by(company_id=registered["company_id"])}
        assert {"qr_issued", "connected", "activated"} <= kinds
    # A reload shows the success screen straight away.
    page.reload()
    expect(page.locator("#success")).to_be_visible(timeout=5_000)


def test_the_qr_rotates_then_expires_and_restart_brings_a_new_one(stack, page):
    registered = register(stack, 771002)
    page.goto(stack.base_url + registered["connect_url"])
    first = _qr_src(page)
    page.wait_for_function("src => document.getElementById('qr-image').src !== src", arg=first, timeout=10_000)
    expect(page.locator("#qr-progress")).to_contain_text("из 3")
    expect(page.locator("#state")).to_have_attribute("data-state", "expired", timeout=15_000)
    expect(page.locator("#expired")).to_be_visible()
    expect(page.locator("#expired-text")).to_contain_text("Время ожидания истекло")
    page.click("#restart")
    expect(page.locator("#state")).to_have_attribute("data-state", "waiting", timeout=10_000)
    assert _qr_src(page) != first


def test_pairing_code_then_the_simulator_button_connects(stack, page):
    registered = register(stack, 771003)
    page.goto(stack.base_url + registered["connect_url"])
    _qr_src(page)
    page.click("#tab-phone")
    page.fill("#phone", "+7 900 765-43-21")
    page.click("#pairing-request")
    expect(page.locator("#pairing-code")).to_have_text(re.compile(r"^[1-9A-Z]{4}-[1-9A-Z]{4}$"), timeout=10_000)
    expect(page.locator("#pairing-countdown")).to_contain_text("Код действует ещё")
    page.click("#simulate-scan")
    expect(page.locator("#success")).to_be_visible(timeout=5_000)
    expect(page.locator("#connected-phone")).to_have_text("+79007654321")


def test_polling_takes_over_when_the_socket_cannot_connect(stack, page):
    registered = register(stack, 771004)
    page.route_web_socket(re.compile(r".*/marketplace/ws$"), lambda ws: ws.close())
    page.goto(stack.base_url + registered["connect_url"])
    _qr_src(page)
    page.click("#simulate-scan")
    expect(page.locator("#success")).to_be_visible(timeout=6_000)


def test_a_bad_token_shows_the_401_page(stack, page):
    registered = register(stack, 771005)
    response = page.goto(f"{stack.base_url}/marketplace/connect?token=forged&company={registered['company_id']}"
                         f"&salon=771005")
    assert response is not None and response.status == 401
    expect(page.locator("h1")).to_have_text("Ссылка недействительна")
    expect(page.locator("body")).to_contain_text("Недействительный токен")
