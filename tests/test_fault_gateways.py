"""The WhatsApp gateway and YClients go away for a while, then come back.

gunicorn, a worker and beat talk to a local server behaving as WAHA does and to the fake YClients.
While a service is away (nothing listens, or it answers 5xx as a proxy in front of a dead one) the
salon's status and ``company show`` list the outage; session tasks and the activation callback retry
with backoff and finish once it is back; client messages wait, queued, and each goes exactly once.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
import requests
from sqlalchemy import select

from models import Message, MessageState, SessionStatus, db
from services.messaging import numbers
from services.platform.jobs import Job, enqueue
from services.whatsapp import sessions
from tests.factories import MadeCompany, make_company, reread_company, reread_session
from tests.fakes.waha import API_KEY, FakeWaha
from tests.messaging.test_delivery import FAST, _record, _webhook
from tests.support import wait_until
from tests.whatsapp_stack import Stack, start_stack

OUTAGE_SECONDS = float(os.environ.get("FAULT_GATEWAY_OUTAGE_SECONDS", "8"))
# Tomorrow 15:00 in Moscow (outside quiet hours, after the salon links in real time), bookings days later.
NOW = (datetime.now(UTC) + timedelta(days=1)).replace(hour=12, minute=0, second=0, microsecond=0)
BOOKED_FOR = (NOW + timedelta(days=4)).astimezone(timezone(timedelta(hours=3))).isoformat()
PHONE = "79990000001"


@pytest.fixture
def waha() -> Iterator[FakeWaha]:
    fake = FakeWaha().start()
    yield fake
    fake.stop()


@pytest.fixture
def stack(make_app, backends, service_env, run_dir, waha) -> Iterator[Stack]:
    started = start_stack(make_app, backends, service_env, run_dir, web=True, beat=True, WHATSAPP_GATEWAY="waha",
                          WAHA_URL=waha.url, WAHA_API_KEY=API_KEY, WHATSAPP_DISCONNECT_DEBOUNCE_SECONDS="2",
                          CALLBACK_RETRY_BASE_SECONDS="0.5", CALLBACK_RETRY_MAX_SECONDS="2",
                          # Retries seconds apart: tries enough to outlast the outage, as hours of backoff do.
                          CALLBACK_MAX_ATTEMPTS="40", **FAST)
    with started.at(NOW):
        yield started
    started.stop()


def _status(stack: Stack, made: MadeCompany) -> dict[str, Any]:
    response = requests.get(f"{stack.base_url}/marketplace/status/{made.id}?token={made.token}", timeout=10)
    assert response.status_code == 200, response.text
    return dict(response.json())


def _outages(stack: Stack, made: MadeCompany) -> list[str]:
    return [o["service"] for o in _status(stack, made)["outages"]]


def _company_show(stack: Stack, company_id: int) -> str:
    result = stack.app.test_cli_runner().invoke(args=["company", "show", str(company_id)])
    assert result.exit_code == 0, result.output
    return str(result.output)


def _wait_out(server: Any, stack: Stack, made: MadeCompany, service: str, status: int | None) -> None:
    """Take ``server`` away for OUTAGE_SECONDS; the salon's status lists the outage meanwhile."""
    server.go_down(status)
    wait_until(lambda: service in _outages(stack, made), timeout=30)
    assert f"{service} unreachable since" in _company_show(stack, made.id)
    time.sleep(OUTAGE_SECONDS)  # the outage itself: retries meanwhile must neither give up nor succeed
    assert service in _outages(stack, made)
    server.come_back()


def test_connect_callback_messages_and_logout_ride_out_outages(stack: Stack, waha: FakeWaha):
    made = make_company(title="Салон Лада", address="Москва, Тверская, 1")
    name = f"company-{made.id}"

    # The gateway refuses connections while the salon starts linking: the start is retried, then done.
    waha.go_down(None)
    assert sessions.request_start(made.id)
    db.session.commit()
    _wait_out(waha, stack, made, "whatsapp_gateway", None)
    wait_until(lambda: name in waha.sessions and waha.sessions[name].status == "SCAN_QR_CODE", timeout=40)
    wait_until(lambda: reread_session(made.id).status == SessionStatus.SCAN_QR_CODE, timeout=15)
    assert "whatsapp_gateway" not in _outages(stack, made)

    # YClients answers 503 when the phone scans: the callback is retried until YClients is back.
    stack.yclients.go_down(503)
    waha.scan(name, PHONE)
    wait_until(lambda: reread_company(made.id).integration_status == "connected", timeout=15)
    _wait_out(stack.yclients, stack, made, "yclients", 503)
    wait_until(lambda: reread_company(made.id).integration_status == "active", timeout=30)
    assert len(stack.yclients.callbacks_for(made.salon_id)) == 1
    assert stack.yclients.failed_requests >= 2
    assert _status(stack, made)["outages"] == []

    # Bookings arrive while the gateway answers 502: their messages wait, then each goes exactly once.
    # WhatsApp already knows the clients' numbers (checked and cached), so the outage meets the sends.
    for n in range(4):
        assert numbers.exists(made.id, name, f"7900111{n:04d}")
    waha.go_down(502)
    records = [_record(made.salon_id, 800 + n, BOOKED_FOR, phone=f"+7900111{n:04d}")
               for n in range(4)]
    for record in records:
        _webhook(stack, made, record)
    _wait_out(waha, stack, made, "whatsapp_gateway", 502)
    wait_until(lambda: len(_sent_to(waha)) == len(records), timeout=60)
    announced = lambda: [m for m in _messages(made.id) if m.kind == "booking_created"]  # noqa: E731
    wait_until(lambda: all(m.state in MessageState.OUT for m in announced()), timeout=30)
    time.sleep(2)  # late retries, if any, would send a second copy now
    sent = _sent_to(waha)
    assert sorted(sent) == sorted({f"7900111{n:04d}@c.us" for n in range(4)})  # each client once
    assert all(m.state != MessageState.FAILED for m in _messages(made.id)), [m.reason for m in _messages(made.id)]

    # The salon uninstalls while the gateway is away: the logout is retried and reaches WAHA after.
    waha.go_down(None)
    enqueue(Job.WHATSAPP_LOGOUT, made.id)
    db.session.commit()
    _wait_out(waha, stack, made, "whatsapp_gateway", None)
    # WAHA's DELETE stops the session, logs it out and forgets it, credentials included.
    wait_until(lambda: ("DELETE", f"/api/sessions/{name}") in waha.calls, timeout=40)
    assert name not in waha.sessions
    assert reread_session(made.id).status == SessionStatus.STOPPED
    assert _status(stack, made)["outages"] == []


def _messages(company_id: int) -> list[Message]:
    db.session.expire_all()
    return list(db.session.scalars(select(Message).where(Message.company_id == company_id).order_by(Message.id)))


def _sent_to(waha: FakeWaha) -> list[str]:
    return [entry["chatId"] for entry in waha.sent_text]
