"""The soak's traffic (tests/test_soak.py): what each sender does, and what it sent, kept for the checks.

Every sender is a thread that runs until the traffic's ``stop`` is set; one that fails records its
traceback in ``errors`` and stops the others, so the soak ends with what broke instead of waiting on a
condition that can no longer come true. ``progress`` prints a flushed line every half minute, so a run
cut short still shows how far it got.
"""

from __future__ import annotations

import json
import os
import random
import threading
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import requests
from flask import Flask
from sqlalchemy import select

from models import Company, Message, MessageState, WhatsAppSession, db
from services.whatsapp import gateway
from tests.factories import MadeCompany, make_company
from tests.fakes.yclients import FakeYClients
from tests.support import ServiceProcess, post

# The salons' rules for the soak: no quiet hours, no re-ask on the visit's day, and both reminders a
# few minutes from now for a visit two hours ahead, so they fall due while the soak runs in real time.
MESSAGING_RULES = {"quiet_hours": None, "reask_at": None,
                   "reminders": [{"kind": "confirmation_request", "hours_before": 2.05},
                                 {"kind": "reminder", "hours_before": 2}]}
SALON_ZONE = ZoneInfo("Europe/Moscow")  # the companies' default time zone
CONNECT_SECONDS = 180


@dataclass(frozen=True)
class ClientBooking:
    """A booking made for a connected salon's client, with the phone only this booking uses."""

    company_id: int
    salon_id: int
    record_id: int
    visit_id: int
    phone: str
    body: bytes


@dataclass
class Traffic:
    """What was sent, kept for the checks afterwards."""

    stop: threading.Event = field(default_factory=threading.Event)
    lock: threading.Lock = field(default_factory=threading.Lock)
    newest: dict[tuple[int, int], int] = field(default_factory=dict)  # (company, record) -> newest version sent
    deliveries: int = 0
    bad_answers: list[Any] = field(default_factory=list)
    salons: list[MadeCompany] = field(default_factory=list)
    bookings: list[ClientBooking] = field(default_factory=list)
    redelivered: int = 0
    replied: dict[tuple[int, str], ClientBooking] = field(default_factory=dict)  # (company, phone) -> booking
    kills: int = 0
    errors: list[str] = field(default_factory=list)
    replies_end: threading.Event = field(default_factory=threading.Event)

    def run(self, name: str, target: Callable[..., None], *args: Any) -> threading.Thread:
        """Start ``target(*args)`` in a thread; an exception in it is recorded and stops the traffic."""

        def guarded() -> None:
            try:
                target(*args)
            except BaseException:
                self.errors.append(f"{name} died:\n{traceback.format_exc()}")
                self.stop.set()

        thread = threading.Thread(target=guarded, name=name)
        thread.start()
        return thread


def record_body(record_id: int, version: int) -> bytes:
    """A YClients-shape record update; ``version`` orders the changes (last_change_date)."""
    changed = f"2024-09-16 {version // 3600 % 24:02d}:{version // 60 % 60:02d}:{version % 60:02d}"
    return json.dumps({"resource": "record", "resource_id": record_id, "status": "update" if version else "create",
                       "data": {"id": record_id, "datetime": "2024-09-20 10:00:00", "last_change_date": changed,
                                "comment": f"v{version}"}}).encode()


def send_webhooks(base: str, companies: list[MadeCompany], traffic: Traffic, seed: int) -> None:
    """Record updates (new, newer, out of order, 20 % repeated) to salons that are not connected, about 20 a
    second: together a load the worker keeps up with between kills, so the soak is a steady state and
    not a backlog that grows for as long as it runs (which would hold every other task back with it)."""
    rng = random.Random(seed)
    while not traffic.stop.wait(rng.uniform(0.02, 0.08)):
        made = rng.choice(companies)
        record_id = rng.randrange(1, 400)
        with traffic.lock:
            key = (made.id, record_id)
            version = traffic.newest.get(key, -1) + 1 if rng.random() > 0.2 else max(traffic.newest.get(key, 0), 0)
            traffic.newest[key] = max(version, traffic.newest.get(key, -1))
            traffic.deliveries += 1
        answer = post(base, f"/marketplace/webhook/{made.id}?secret={made.webhook_secret}",
                      record_body(record_id, version))
        if answer != (200, {"success": True}):
            traffic.bad_answers.append(answer)


def connect_salons(app: Flask, base: str, traffic: Traffic) -> None:
    """Salons one after another through the whole connect flow."""
    n = 0
    while not traffic.stop.is_set():
        n += 1
        connect_salon(app, base, traffic, f"+7900{n:07d}")
        traffic.stop.wait(2)


def connect_salon(app: Flask, base: str, traffic: Traffic, phone: str) -> MadeCompany:
    """A new salon sets its messaging rules, then its phone scans the connect page's QR."""
    with app.app_context():
        made = make_company()
        db.session.remove()
    answer = requests.put(f"{base}/marketplace/companies/{made.id}/messaging", json=MESSAGING_RULES,
                          headers={"X-API-Key": made.api_key}, timeout=30)
    assert answer.status_code == 200, answer.text
    with traffic.lock:
        traffic.salons.append(made)
    with app.app_context():
        _connect(base, made, phone, traffic)
        db.session.remove()
    return made


def _connect(base: str, made: MadeCompany, phone: str, traffic: Traffic) -> None:
    """Open the QR page and scan its code, opening it again (a new login attempt) when the code ran out."""
    deadline = time.monotonic() + CONNECT_SECONDS
    while time.monotonic() < deadline:
        if traffic.errors:
            return  # another sender failed: the soak is ending with its error
        try:  # the worker starts the session (it may be killed meanwhile: its task comes back)
            requests.get(f"{base}/marketplace/qr/{made.token}", timeout=30)
        except requests.RequestException:
            pass
        for _ in range(20):
            try:
                gateway.simulate_scan(made.id, phone)
                return
            except Exception:  # no code to scan yet, or the attempt's codes ran out
                time.sleep(1)
    db.session.expire_all()
    row = db.session.scalars(select(WhatsAppSession).where(WhatsAppSession.company_id == made.id)).first()
    state = None if row is None else (row.status, f"attempt {row.attempt}", f"{row.qr_count} codes", row.failure_reason)
    raise AssertionError(f"salon {made.id} found no QR to scan in {CONNECT_SECONDS} s; its session: {state}")


def client_booking(made: MadeCompany, n: int, now: datetime) -> ClientBooking:
    """A new booking two hours and a few minutes ahead, for a client with a phone of its own."""
    record_id, visit_id = 100_000 + n, 500_000 + n
    phone = f"+7902{n:07d}"
    starts = (now + timedelta(hours=2, minutes=2 + n % 4)).astimezone(SALON_ZONE).replace(microsecond=0)
    data = {"id": record_id, "datetime": starts.isoformat(), "seance_length": 3600,
            "staff": {"id": 3, "name": "Ольга"}, "services": [{"id": 1, "title": "Стрижка"}],
            "client": {"id": 700_000 + n, "name": "Анна", "phone": phone}, "attendance": 0, "visit_id": visit_id,
            "last_change_date": now.astimezone(SALON_ZONE).replace(microsecond=0).isoformat()}
    body = json.dumps({"company_id": made.salon_id, "resource": "record", "resource_id": record_id,
                       "status": "create", "data": data}).encode()
    return ClientBooking(made.id, made.salon_id, record_id, visit_id, phone, body)


def book_clients(app: Flask, base: str, yclients: FakeYClients, traffic: Traffic, seed: int) -> None:
    """New bookings for the salons that have connected WhatsApp (the planner writes to no other), one in
    five delivered twice."""
    rng = random.Random(seed)
    n = 0
    with app.app_context():
        while not traffic.stop.wait(rng.uniform(0.3, 1.0)):
            with traffic.lock:
                candidates, earlier = {made.id: made for made in traffic.salons}, list(traffic.bookings)
            db.session.rollback()
            connected = list(db.session.scalars(select(Company.id).where(
                Company.id.in_(candidates), Company.whatsapp_connected_at.is_not(None))))
            if not connected:
                continue
            if earlier and rng.random() < 0.2:
                booking = rng.choice(earlier)  # YClients delivers a record it sent before again
                with traffic.lock:
                    traffic.redelivered += 1
            else:
                n += 1
                booking = client_booking(candidates[rng.choice(connected)], n, datetime.now(SALON_ZONE))
                yclients.visit(booking.salon_id, booking.record_id, booking.visit_id)
                with traffic.lock:
                    traffic.bookings.append(booking)
            made = candidates[booking.company_id]
            answer = post(base, f"/marketplace/webhook/{made.id}?secret={made.webhook_secret}", booking.body)
            if answer != (200, {"success": True}):
                traffic.bad_answers.append(answer)
        db.session.remove()


def reply_to_requests(app: Flask, traffic: Traffic, until: threading.Event) -> None:
    """Each client answers «1» once its confirmation request went out (the simulator writes as the client),
    until ``until`` is set: after the traffic, while the requests still due go out."""
    with app.app_context():
        while not until.wait(1):
            with traffic.lock:
                by_phone = {(b.company_id, b.phone): b for b in traffic.bookings}
            db.session.rollback()
            sent = db.session.execute(select(Message.company_id, Message.phone).where(
                Message.company_id.in_({company for company, _ in by_phone}),
                Message.kind == "confirmation_request", Message.state.in_(MessageState.OUT))).all()
            for company_id, phone in sent:
                key = (company_id, phone)
                if key in by_phone and key not in traffic.replied:
                    gateway.simulate_reply(company_id, phone, "1")
                    traffic.replied[key] = by_phone[key]
        db.session.remove()


def kill_worker_now_and_then(worker: ServiceProcess, traffic: Traffic, seed: int) -> None:
    """SIGKILL the worker's process group every 2–12 s and start it again."""
    rng = random.Random(seed)
    while not traffic.stop.wait(rng.uniform(2, 12)):
        worker.kill()
        traffic.kills += 1
        worker.start()


def progress(traffic: Traffic, started: float, report: Callable[[], str]) -> None:
    """A flushed line every 30 s: the traffic so far and what ``report`` says of the service's side."""
    while not traffic.stop.wait(30):
        print(f"soak {time.monotonic() - started:.0f}s: {traffic.deliveries} deliveries, {len(traffic.salons)} "
              f"salons, {len(traffic.bookings)} client bookings, {len(traffic.replied)} replies, "
              f"{traffic.kills} kills; {report()}; load {os.getloadavg()[0]:.1f}", flush=True)
