"""Webhook ingestion: always 200, stored once with a derived key, rejected deliveries kept with a reason."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator

import pytest
import redis
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select, text

from models import EventStatus, WebhookEvent, db
from services.platform.metrics import WEBHOOKS_RECEIVED
from tests.support import Backends, free_port

OK = {"success": True}


@pytest.fixture(scope="session")
def quiet_app(make_app, backends: Backends) -> Iterator[Callable[..., Flask]]:
    """Apps that enqueue into a namespace no worker consumes: these tests look at storage, not processing."""
    namespace = f"{backends.namespace}quiet"
    yield lambda **overrides: make_app(redis_namespace=namespace, **overrides)
    with redis.Redis.from_url(backends.redis_url) as client:
        for key in client.scan_iter(f"{namespace}:*"):
            client.delete(key)


@pytest.fixture(scope="session")
def _quiet_default(quiet_app) -> Flask:
    return quiet_app()


@pytest.fixture
def client(_quiet_default: Flask) -> FlaskClient:
    return _quiet_default.test_client()


def _path(made, secret: str | None = "") -> str:
    secret = made.webhook_secret if secret == "" else secret
    return f"/marketplace/webhook/{made.id}" + (f"?secret={secret}" if secret is not None else "")


def _events() -> list[WebhookEvent]:
    db.session.rollback()
    return list(db.session.scalars(select(WebhookEvent).order_by(WebhookEvent.id)))


def _count(source: str, outcome: str) -> float:
    return WEBHOOKS_RECEIVED.labels(source, outcome)._value.get()


REFERENCE = {
    "type": "booking_created",
    "data": {"id": 12345, "client_id": 67890, "service_id": 45, "staff_id": 3, "datetime": "2024-09-17T15:00:00"},
    "created_at": "2024-09-16T10:30:00Z",
}


def test_reference_shape_is_stored_and_acknowledged(client, company_factory):
    made = company_factory()
    response = client.post(_path(made), json=REFERENCE)
    assert response.status_code == 200 and response.get_json() == OK
    [event] = _events()
    assert (event.company_id, event.source, event.type) == (made.id, "reference", "booking_created")
    assert event.payload == REFERENCE and event.status != EventStatus.REJECTED
    assert event.dedupe_key.startswith("wh:") and event.request_id


@pytest.mark.parametrize(
    ("resource", "status", "expected"),
    [
        ("record", "create", "booking_created"),
        ("record", "update", "booking_updated"),
        ("record", "delete", "booking_cancelled"),
        ("client", "create", "client_created"),
        ("client", "update", "client_updated"),
        ("finances_operation", "create", "finances_operation.create"),
    ],
)
def test_native_shape_is_mapped_and_unknown_resources_kept(client, company_factory, resource, status, expected):
    made = company_factory()
    body = {"company_id": made.salon_id, "resource": resource, "resource_id": 501, "status": status,
            "data": {"id": 501, "amount": 1500}}
    assert client.post(_path(made), json=body).get_json() == OK
    [event] = _events()
    assert (event.source, event.type, event.payload) == ("yclients", expected, body)


def test_the_same_delivery_five_times_is_stored_once(client, company_factory):
    made = company_factory()
    before = _count("reference", "duplicate")
    for _ in range(5):
        assert client.post(_path(made), json=REFERENCE).get_json() == OK
    assert len(_events()) == 1
    assert _count("reference", "duplicate") - before == 4
    # A different change to the same booking is a different delivery.
    client.post(_path(made), json={**REFERENCE, "type": "booking_updated"})
    assert len(_events()) == 2


def test_dedupe_key_is_per_company(client, company_factory):
    first, second = company_factory(), company_factory()
    client.post(_path(first), json=REFERENCE)
    client.post(_path(second), json=REFERENCE)
    assert sorted(e.company_id for e in _events()) == sorted([first.id, second.id])


@pytest.mark.parametrize("secret", [None, "wrong-secret", ""])
def test_unauthenticated_deliveries_are_stored_as_rejected(client, company_factory, secret):
    made = company_factory()
    path = f"/marketplace/webhook/{made.id}" + ("" if secret is None else f"?secret={secret}")
    for _ in range(2):
        response = client.post(path, json=REFERENCE)
        assert response.status_code == 200 and response.get_json() == OK
    events = _events()
    assert [(e.status, e.reject_reason, e.company_id) for e in events] == [
        (EventStatus.REJECTED, "invalid webhook secret", made.id)
    ] * 2
    assert len({e.dedupe_key for e in events}) == 2


def test_unknown_company_is_rejected_without_an_owner(client, company_factory):
    made = company_factory()
    for company_id in (made.id + 1000, 2**40):
        assert client.post(f"/marketplace/webhook/{company_id}?secret=x", json=REFERENCE).get_json() == OK
    events = _events()
    assert [(e.status, e.reject_reason, e.company_id) for e in events] == [
        (EventStatus.REJECTED, "unknown company", None)
    ] * 2
    assert events[0].payload["url_company_id"] == made.id + 1000


GARBAGE = [
    (b"", "empty body"),
    (b"not json at all", "malformed JSON"),
    (b"\xff\xfe\x00garbage", "malformed JSON"),
    (b"[1, 2, 3]", "body is not a JSON object"),
    (b'{"hello": "world"}', "neither the reference shape"),
    (b'{"type": 5, "data": {}}', "missing or invalid type"),
    (b'{"type": "booking_created", "data": []}', "data is not an object"),
    (b'{"type": "booking_created", "data": {"client_id": 1}}', "booking_created without an integer id"),
    (b'{"type": "booking_created", "data": {"id": 1, "x": "a\\u0000b"}}', "NUL character"),
    (b'{"type": "booking_created", "data": {"id": 1, "x": "\\ud800"}}', "invalid Unicode"),
    (b'{"type": "booking_created", "data": {"id": 1, "x": "\\uDBFF"}}', "invalid Unicode"),
    ('{"type": "booking_created", "data": {"id": 1, "x": "a\\u0000b"}}'.encode("utf-16"), "NUL character"),
    (b'{"type": "booking_created", "data": {"id": NaN}}', "NaN is not a number"),
    (b'{"type": "booking_created", "data": {"id": 1, "v": 1e999}}', "number out of range"),
    (b"[" * 100_000, "malformed JSON"),
    # An id past BIGINT would fail every processing attempt (and force its batch to run one by one).
    (b'{"type": "booking_created", "data": {"id": 1180591620717411303424}}', "without an integer id"),
    (b'{"resource": "record", "status": "create", "resource_id": 1180591620717411303424}', "without an integer id"),
    (b'{"resource": "record", "status": "update", "resource_id": 1, "company_id": 1}', "does not match the salon"),
]


@pytest.mark.parametrize(("body", "reason"), GARBAGE)
def test_garbage_bodies_are_acknowledged_and_rejected(client, company_factory, body, reason):
    made = company_factory()
    response = client.post(_path(made), data=body, content_type="application/json")
    assert response.status_code == 200 and response.get_json() == OK
    [event] = _events()
    assert event.status == EventStatus.REJECTED and reason in (event.reject_reason or "")
    assert event.attempts == 0 and event.processed_at is None


def test_escapes_that_are_not_nul_or_lone_surrogates_are_accepted(client, company_factory):
    made = company_factory()
    body = b'{"type": "booking_created", "data": {"id": 7, "x": "\\u00e9\\ud83d\\ude00\\\\u0000"}}'
    response = client.post(_path(made), data=body, content_type="application/json")
    assert response.status_code == 200
    [event] = _events()
    assert event.status == EventStatus.RECEIVED
    assert event.payload["data"]["x"] == "\u00e9\U0001f600\\u0000"


def test_oversized_body_is_rejected_without_being_stored(quiet_app, company_factory):
    app = quiet_app(webhook_max_body_bytes=200)
    made = company_factory()
    body = json.dumps({**REFERENCE, "data": {**REFERENCE["data"], "comment": "x" * 500}})
    with app.test_client() as c:
        assert c.post(_path(made), data=body, content_type="application/json").get_json() == OK
        # Beyond Flask's own limit, too.
        assert c.post(_path(made), data=b"{" + b" " * (2 * 1024 * 1024) + b"}").get_json() == OK
    with app.app_context():
        events = _events()
    assert [(e.status, e.reject_reason) for e in events] == [(EventStatus.REJECTED, "body too large")] * 2
    assert "excerpt" not in events[0].payload


def test_webhook_is_never_rate_limited(quiet_app, company_factory):
    app = quiet_app(ratelimit_enabled=True, ratelimit_public="1/minute", ratelimit_protected="1/minute")
    made = company_factory()
    with app.test_client() as c:
        statuses = {c.post(_path(made), json={**REFERENCE, "created_at": str(i)}).status_code for i in range(5)}
    assert statuses == {200}


def test_a_delivery_the_database_refuses_is_answered_503_so_it_is_sent_again(client, company_factory, backends):
    # Not an unreachable database (that one goes to the spool, tests/test_fault_postgres.py): acknowledging
    # it would lose it, so YClients is told to retry.
    made = company_factory()
    before = _count("yclients", "store_failed") + _count("reference", "store_failed")
    db.session.execute(text("ALTER TABLE webhook_events RENAME TO webhook_events_moved"))
    db.session.commit()
    try:
        response = client.post(_path(made), json=REFERENCE)
    finally:
        db.session.rollback()
        db.session.execute(text("ALTER TABLE webhook_events_moved RENAME TO webhook_events"))
        db.session.commit()
    assert response.status_code == 503 and response.get_json()["success"] is False
    assert response.headers["Retry-After"] == "30"
    assert _count("yclients", "store_failed") + _count("reference", "store_failed") - before == 1
    assert _events() == []


def test_broker_down_answers_fast_and_keeps_the_event(make_app, company_factory):
    app = make_app(redis_url=f"redis://127.0.0.1:{free_port()}/0")
    made = company_factory()
    with app.test_client() as c:
        started = time.monotonic()
        response = c.post(_path(made), json=REFERENCE)
        elapsed = time.monotonic() - started
    assert response.status_code == 200 and response.get_json() == OK
    assert elapsed < 1.0
    with app.app_context():
        [event] = _events()
    assert event.status == EventStatus.RECEIVED and event.attempts == 0


def test_literal_yclients_path_is_not_a_company_id(client, ctx):
    response = client.post("/marketplace/webhook/yclients", json={"event": "uninstall"})
    assert response.status_code == 401
    [event] = _events()
    assert (event.source, event.status, event.reject_reason) == ("lifecycle", "rejected", "invalid partner token")
