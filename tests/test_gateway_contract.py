"""One contract for every gateway: the Evolution API and WAHA adapters against their faithful fakes, and the
built-in simulator, are held to the same behaviour, seen through the internal (WAHA-shaped) events."""

from __future__ import annotations

import json
import threading
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler
from typing import Any

import pytest
import redis

from integrations.whatsapp import EvolutionGateway, SimulatorGateway, SimulatorTimings, WahaGateway, WhatsAppGateway
from tests.fakes import evolution as fake_evolution
from tests.fakes import waha as fake_waha
from tests.fakes.local_http import LocalHTTPServer
from tests.support import wait_until

PHONE = "79001234567"
CLIENT = "79005556677"


class Collector(LocalHTTPServer):
    """Receives a gateway's webhook deliveries and keeps them as internal events (``translate``)."""

    def __init__(self) -> None:
        super().__init__()
        self.gateway: WhatsAppGateway | None = None
        self.events: list[dict[str, Any]] = []
        self._lock = threading.Lock()

    def _handle(self, handler: BaseHTTPRequestHandler, method: str) -> None:
        raw = handler.rfile.read(int(handler.headers.get("Content-Length") or 0))
        assert self.gateway is not None
        with self._lock:
            self.events.extend(self.gateway.translate(json.loads(raw)))
        handler.send_response(200)
        handler.send_header("Content-Length", "0")
        handler.end_headers()


@dataclass
class Driver:
    """An adapter, the events it produced, and the hands of the phone and its contacts."""

    gateway: WhatsAppGateway
    events: list[dict[str, Any]]
    scan: Callable[[str, str], None]
    incoming: Callable[[str, str, str], str]
    ack: Callable[[str, str, int], None]
    forget_number: Callable[[str], None]
    webhook_url: str | None = None

    def statuses(self, session: str) -> list[str]:
        return [e["payload"]["status"] for e in list(self.events)
                if e["event"] == "session.status" and e["session"] == session]


@pytest.fixture(params=["simulator", "waha", "evolution"])
def driver(request: pytest.FixtureRequest, backends: Any) -> Iterator[Driver]:
    if request.param == "simulator":
        client = redis.Redis.from_url(backends.redis_url)
        prefix = f"{backends.namespace}:contract:{uuid.uuid4().hex[:6]}"
        events: list[dict[str, Any]] = []
        sim = SimulatorGateway(client, prefix, SimulatorTimings(60, 20, 6), lambda *a: None, events.append)
        def scan(session: str, phone: str) -> None:
            sim.scan(session, phone)  # WhatsApp's 515 "restart required": the service restarts, as WAHA does itself
            sim.restart(session)

        yield Driver(sim, events, scan, sim.reply, sim.ack, lambda digits: sim.set_number_exists(digits, False))
        for key in client.scan_iter(prefix + "*"):
            client.delete(key)
        client.close()
        return
    collector = Collector().start()
    if request.param == "waha":
        waha = fake_waha.FakeWaha(tier="PLUS").start()
        adapter: WhatsAppGateway = WahaGateway(waha.url, fake_waha.API_KEY, 10)
        fake: Any = waha
    else:
        evo = fake_evolution.FakeEvolution().start()
        adapter = EvolutionGateway(evo.url, fake_evolution.API_KEY, 10)
        fake = evo
    collector.gateway = adapter
    yield Driver(adapter, collector.events, fake.scan, fake.incoming, fake.ack, fake.not_on_whatsapp.add,
                 webhook_url=collector.url + "/events")
    fake.stop()
    collector.stop()


def _start(driver: Driver, session: str) -> None:
    driver.gateway.start(session, driver.webhook_url)
    wait_until(lambda: "SCAN_QR_CODE" in driver.statuses(session), timeout=10)


def _link(driver: Driver, session: str) -> None:
    _start(driver, session)
    driver.scan(session, PHONE)
    wait_until(lambda: driver.statuses(session)[-1:] == ["WORKING"], timeout=10)


def test_a_started_session_waits_for_a_scan_with_a_whatsapp_qr(driver):
    _start(driver, "company-1")
    code = driver.gateway.qr("company-1")
    assert code is not None and code.value.startswith("2@") and code.value.count(",") == 3
    assert driver.gateway.info("company-1").status == "SCAN_QR_CODE"


def test_a_pairing_code_has_eight_characters(driver):
    _start(driver, "company-1")
    code = driver.gateway.request_pairing_code("company-1", PHONE).replace("-", "")
    assert len(code) == 8 and code.isalnum() and code.upper() == code


def test_a_scan_reports_working_with_the_linked_number(driver):
    _link(driver, "company-1")
    working = [e for e in driver.events if e["event"] == "session.status" and e["payload"]["status"] == "WORKING"]
    assert working[-1]["me"]["id"] == f"{PHONE}@c.us"
    assert "code" not in working[-1]["payload"]
    info = driver.gateway.info("company-1")
    assert (info.status, info.phone) == ("WORKING", PHONE)


def test_sending_returns_the_gateway_message_id_and_numbers_are_checked(driver):
    _link(driver, "company-1")
    first = driver.gateway.send_text("company-1", CLIENT, "Здравствуйте!")
    second = driver.gateway.send_text("company-1", CLIENT, "Напоминаем о записи")
    assert first and second and first != second
    driver.gateway.typing("company-1", CLIENT, 0.01)
    assert driver.gateway.number_exists("company-1", CLIENT) is True
    driver.forget_number("79990001122")
    assert driver.gateway.number_exists("company-1", "79990001122") is False


def test_incoming_messages_and_receipts_arrive_in_the_internal_shape(driver):
    _link(driver, "company-1")
    message_id = driver.incoming("company-1", CLIENT, "1")
    wait_until(lambda: any(e["event"] == "message" for e in driver.events), timeout=10)
    message = next(e for e in driver.events if e["event"] == "message")
    assert message["session"] == "company-1" and message["payload"]["id"] == message_id
    assert message["payload"]["from"] == f"{CLIENT}@c.us" and message["payload"]["body"] == "1"
    assert message["payload"]["fromMe"] is False and isinstance(message["payload"]["timestamp"], int)
    sent = driver.gateway.send_text("company-1", CLIENT, "Спасибо!")
    driver.ack("company-1", sent, 2)
    wait_until(lambda: any(e["event"] == "message.ack" for e in driver.events), timeout=10)
    receipt = next(e for e in driver.events if e["event"] == "message.ack")
    assert receipt["payload"]["id"] == sent and receipt["payload"]["ack"] == 2
    assert receipt["payload"]["ackName"] == "DEVICE"
    # Our own outgoing messages are never reported as incoming.
    assert [e["payload"]["id"] for e in driver.events if e["event"] == "message"] == [message_id]


def test_a_stopped_session_starts_again_without_a_new_scan(driver):
    _link(driver, "company-1")
    driver.gateway.stop("company-1")
    count = len(driver.statuses("company-1"))
    driver.gateway.start("company-1", driver.webhook_url)
    wait_until(lambda: driver.statuses("company-1")[count:][-1:] == ["WORKING"], timeout=10)
    assert "SCAN_QR_CODE" not in driver.statuses("company-1")[count:]


def test_logout_unlinks_for_good(driver):
    _link(driver, "company-1")
    driver.gateway.logout("company-1")
    driver.gateway.logout("company-1")  # idempotent
    info = driver.gateway.info("company-1")
    assert info.status != "WORKING" and info.phone is None
    count = len(driver.statuses("company-1"))
    driver.gateway.start("company-1", driver.webhook_url)
    wait_until(lambda: "SCAN_QR_CODE" in driver.statuses("company-1")[count:], timeout=10)
    assert "WORKING" not in driver.statuses("company-1")[count:]


def test_restart_brings_back_a_session_the_gateway_does_not_know(driver):
    driver.gateway.restart("company-7", driver.webhook_url)
    wait_until(lambda: "SCAN_QR_CODE" in driver.statuses("company-7"), timeout=10)
    assert driver.gateway.info("company-7").status == "SCAN_QR_CODE"


def test_an_ended_attempt_stops_showing_codes(driver):
    _start(driver, "company-1")
    driver.gateway.end_attempt("company-1")
    assert driver.gateway.qr("company-1") is None
    assert driver.gateway.info("company-1").status != "SCAN_QR_CODE"
