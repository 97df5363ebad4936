"""The salon page in headless Chromium against gunicorn + a worker: sign-in from YClients' signed redirect,
another company's page refused, disconnect and relink; the landing, connect and salon pages pass axe-core
and do not scroll sideways at phone and desktop widths."""

from __future__ import annotations

import re
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import pytest
import requests
from playwright.sync_api import Page, expect
from sqlalchemy import select

from models import Message, db
from services.access import salon_sessions
from services.platform import clock
from services.platform.jobs import Job
from tests.e2e.page_checks import check_page
from tests.fakes.yclients import signed_user_data
from tests.support import ROOT, wait_until
from tests.whatsapp_stack import Stack, register, start_stack

OWNER = {"id": 5101, "name": "Ирина", "phone": "79005550101", "email": "irina@example.com", "is_approved": True,
         "avatar": "", "salon_name": "Студия Ирины"}
STRANGER = {**OWNER, "id": 5102, "name": "Чужой", "salon_name": "Чужой салон"}


# Messages go out as fast as the test asks: no typing pause, no gap between sends.
FAST = {"WHATSAPP_MAX_PER_MINUTE": "600", "WHATSAPP_TYPING_MAX_SECONDS": "0"}


@pytest.fixture(scope="module")
def stack(make_app, backends, service_env, run_dir) -> Iterator[Stack]:
    started = start_stack(make_app, backends, service_env, run_dir, web=True, **FAST)
    yield started
    started.stop()


@pytest.fixture(scope="module")
def shots(run_dir: Path) -> Path:
    folder = run_dir / "screenshots"
    folder.mkdir(exist_ok=True)
    return folder


def _linked(stack: Stack, salon_id: int, phone: str) -> dict[str, Any]:
    """A registered salon whose WhatsApp the simulator linked."""
    registered = register(stack, salon_id)
    token = registered["connect_url"].split("token=")[1].split("&")[0]
    shown = requests.get(f"{stack.base_url}/marketplace/qr/{token}", timeout=30)  # starts the login attempt
    assert shown.status_code == 200, shown.text
    scanned = requests.post(f"{stack.base_url}/marketplace/simulator/scan/{token}", json={"phone": phone},
                            timeout=10)
    assert scanned.status_code == 200, scanned.text
    status_url = f"{stack.base_url}/marketplace/status/{registered['company_id']}?token={token}"
    wait_until(lambda: requests.get(status_url, timeout=10).json().get("whatsapp_connected"), timeout=15)
    return registered


def _install_url(stack: Stack, salon_id: int, user: dict[str, Any]) -> str:
    user_data, sign = signed_user_data(user)
    query = urlencode({"salon_id": salon_id, "user_data": user_data, "user_data_sign": sign})
    return f"{stack.base_url}/marketplace/install?{query}"


def _sign_in(page: Page, stack: Stack, salon_id: int) -> None:
    page.goto(_install_url(stack, salon_id, OWNER))
    expect(page).to_have_url(f"{stack.base_url}/marketplace/salon")


def test_the_signed_redirect_signs_in_with_an_httponly_cookie_and_the_page_passes_axe(stack, page, shots):
    _linked(stack, 772001, "+79001230001")
    _sign_in(page, stack, 772001)
    expect(page.locator("#connected-phone")).to_have_text("+79001230001")
    expect(page.locator("#state")).to_have_attribute("data-state", "connected")
    cookie = next(c for c in page.context.cookies() if c["name"] == salon_sessions.COOKIE)
    assert cookie["httpOnly"] and cookie["sameSite"] == "Lax" and cookie["path"] == "/marketplace/salon"
    assert page.evaluate("() => document.cookie") == ""
    check_page(page, "salon", shots)
    page.click("text=Выйти")
    expect(page.locator("h1")).to_have_text("Вы вышли со страницы салона")
    page.goto(f"{stack.base_url}/marketplace/salon")
    expect(page.locator("h1")).to_have_text("Нужно войти")


def test_another_companys_page_is_refused(stack, page):
    _linked(stack, 772002, "+79001230002")
    stack.yclients.install(772003)
    other = requests.get(_install_url(stack, 772003, STRANGER), allow_redirects=False, timeout=10)
    assert other.status_code == 302, other.text  # a salon of another YClients user
    _sign_in(page, stack, 772002)
    refused = page.goto(_install_url(stack, 772003, OWNER))
    assert refused is not None and refused.status == 403
    forged = page.goto(f"{stack.base_url}/marketplace/salon?token=forged")
    assert forged is not None and forged.status == 401
    page.goto(f"{stack.base_url}/marketplace/salon")
    expect(page.locator("#connected-phone")).to_have_text("+79001230002")
    expect(page.locator("h1")).not_to_have_text("Чужой салон")


def test_disconnect_with_confirmation_then_relink_in_place(stack, page):
    _linked(stack, 772004, "+79001230004")
    _sign_in(page, stack, 772004)
    expect(page.locator("#disconnect-confirm")).to_be_hidden()
    page.click("#disconnect summary")
    page.click("#disconnect-confirm")
    expect(page.locator("#state")).to_have_attribute("data-state", "idle", timeout=10_000)
    relink = page.locator("#relink")
    expect(relink).to_be_visible()
    relink.click()
    image = page.locator("#qr-image")
    expect(image).to_be_visible(timeout=10_000)
    assert (image.get_attribute("src") or "").startswith("data:image/png;base64,")
    page.click("#simulate-scan")
    expect(page.locator("#success")).to_be_visible(timeout=5_000)
    expect(page.locator("#state")).to_have_attribute("data-state", "connected")


def test_the_landing_and_connect_pages_pass_axe_at_both_widths(stack, page, shots):
    page.goto(f"{stack.base_url}/marketplace/")
    check_page(page, "landing", shots)
    registered = register(stack, 772005)
    page.goto(stack.base_url + registered["connect_url"])
    expect(page.locator("#qr-image")).to_be_visible(timeout=10_000)
    check_page(page, "connect", shots)


def test_the_template_editor_shows_an_unknown_placeholder_inline_then_saves_and_previews(stack, page):
    _linked(stack, 772006, "+79001230006")
    _sign_in(page, stack, 772006)
    page.click("#template-reminder summary")
    text = page.locator("#text-reminder")
    text.fill("{client_name}, ждём вас {когда}")
    error = page.locator("#template-error-reminder")
    expect(error).to_be_visible(timeout=5_000)
    expect(error).to_contain_text("Неизвестная подстановка {когда}")
    expect(text).to_have_attribute("aria-invalid", "true")
    text.fill("{client_name}, ждём вас в {time}, {salon}")
    expect(error).to_be_hidden(timeout=5_000)
    expect(page.locator("#preview-reminder")).to_have_text(re.compile(r"^Анна, ждём вас в 15:00, "))
    page.click("#template-reminder button[value=save]")
    expect(page).to_have_url(re.compile(r"/marketplace/salon#templates$"))
    page.click("#template-reminder summary")
    expect(page.locator("#text-reminder")).to_have_value("{client_name}, ждём вас в {time}, {salon}")
    expect(page.locator("#preview-reminder")).to_have_text(re.compile(r"^Анна, ждём вас в 15:00, "))


def _book(registered: dict[str, Any], salon_id: int, starts: datetime, phone: str = "+79005556677") -> None:
    """YClients sends a new booking of client Вера to the salon's webhook URL."""
    record = {"company_id": salon_id, "resource": "record", "resource_id": 501, "status": "create", "data": {
        "id": 501, "datetime": starts.isoformat(), "seance_length": 3600, "staff": {"id": 3, "name": "Ольга"},
        "services": [{"id": 1, "title": "Стрижка"}], "client": {"id": 77, "name": "Вера", "phone": phone},
        "attendance": 0, "visit_id": 9501}}
    delivered = requests.post(registered["webhook_url"], json=record, timeout=10)
    assert delivered.status_code == 200, delivered.text


def test_a_booking_webhook_appears_in_the_log_live(stack, page):
    registered = _linked(stack, 772007, "+79001230007")
    _sign_in(page, stack, 772007)
    expect(page.locator("#log")).to_have_count(0)
    _book(registered, 772007, (datetime.now(UTC) + timedelta(days=3)).replace(hour=9, minute=0, second=0,
                                                                              microsecond=0))
    row = page.locator("#log .row", has_text="Запись создана")
    expect(row).to_be_visible(timeout=15_000)
    expect(row).to_contain_text("Вера")
    expect(page.locator(".upcoming .row", has_text="Вера").first).to_be_visible()


def _message(stack: Stack, company_id: int, kind: str) -> Message:
    with stack.app.app_context():
        query = select(Message).where(Message.company_id == company_id, Message.kind == kind)
        found = db.session.scalars(query).first()
        db.session.remove()
    assert found is not None, kind
    return found


def test_a_reply_1_turns_the_confirmation_row_to_confirmed_live(stack, page, backends):
    registered = _linked(stack, 772008, "+79001230008")
    company_id = registered["company_id"]
    _sign_in(page, stack, 772008)
    _book(registered, 772008, (datetime.now(UTC) + timedelta(days=3)).replace(hour=9, minute=0, second=0,
                                                                              microsecond=0))
    expect(page.locator(".upcoming .row", has_text="Просьба подтвердить").first).to_be_visible(timeout=15_000)
    request = _message(stack, company_id, "confirmation_request")
    with stack.app.app_context():  # the evening before the visit, when the request is due
        clock.set_test_time(request.due_at + timedelta(minutes=1))
    stack.app.extensions["celery"].send_task(Job.MESSAGING_TICK.value)
    row = page.locator(f"#message-{request.id}")
    expect(row).to_have_attribute("data-state", "sent", timeout=20_000)
    command = [sys.executable, "-m", "flask", "--app", "wsgi", "whatsapp", "simulate-reply", str(company_id),
               request.phone, "1"]  # the client answers «1» on the simulated phone
    result = subprocess.run(command, cwd=ROOT, env=backends.env(**stack.env), capture_output=True, text=True,
                            timeout=60)
    assert result.returncode == 0, result.stderr[-2000:]
    expect(row).to_have_attribute("data-reply", "confirm", timeout=10_000)
    expect(row).to_contain_text("Подтвердил(а) запись")
    expect(page.locator("#replies .row", has_text="«1»")).to_be_visible()
