"""The soak's traffic (tests/test_soak.py): what each sender does, and what it sent, kept for the checks."""

from __future__ import annotations

import json
import random
import threading
import time
from typing import Any

import requests
from flask import Flask

from models import db
from services.whatsapp import gateway
from tests.factories import MadeCompany, make_company
from tests.support import ServiceProcess, post, wait_until


class Traffic:
    """What was sent, kept for the checks afterwards."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.newest: dict[tuple[int, int], int] = {}  # (company, record) -> newest version sent
        self.deliveries = 0
        self.bad_answers: list[Any] = []
        self.salons: list[MadeCompany] = []
        self.kills = 0


def record_body(record_id: int, version: int) -> bytes:
    """A YClients-shape record update; ``version`` orders the changes (last_change_date)."""
    changed = f"2024-09-16 {version // 3600 % 24:02d}:{version // 60 % 60:02d}:{version % 60:02d}"
    return json.dumps({"resource": "record", "resource_id": record_id, "status": "update" if version else "create",
                       "data": {"id": record_id, "datetime": "2024-09-20 10:00:00", "last_change_date": changed,
                                "comment": f"v{version}"}}).encode()


def send_webhooks(base: str, companies: list[MadeCompany], traffic: Traffic, until: float, seed: int) -> None:
    rng = random.Random(seed)
    while time.monotonic() < until:
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


def connect_salons(app: Flask, base: str, traffic: Traffic, until: float) -> None:
    n = 0
    while time.monotonic() < until:
        n += 1
        with app.app_context():
            made = make_company()
            db.session.remove()
        traffic.salons.append(made)
        try:  # the page's first QR: the worker starts the session (it may be killed meanwhile; the page retries)
            requests.get(f"{base}/marketplace/qr/{made.token}", timeout=30)
        except requests.RequestException:
            pass
        with app.app_context():
            wait_until(lambda made=made, n=n: _scan(made.id, n), timeout=120, interval=1)
            db.session.remove()
        time.sleep(2)


def _scan(company_id: int, n: int) -> bool:
    try:
        gateway.simulate_scan(company_id, f"+7900{n:07d}")
        return True
    except Exception:  # no QR yet: the session task has not run (a killed worker's task comes back)
        return False


def kill_worker_now_and_then(worker: ServiceProcess, traffic: Traffic, until: float, seed: int) -> None:
    rng = random.Random(seed)
    while time.monotonic() < until:
        time.sleep(rng.uniform(2, 12))
        worker.kill()
        traffic.kills += 1
        worker.start()
