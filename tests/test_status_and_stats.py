"""GET /marketplace/status/:companyId (who may read it) and GET /marketplace/companies (stats)."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

import jwt
import pytest

from models import CompanyEvent, IntegrationStatus, SessionStatus, WhatsAppSession, db
from services.access import tokens
from tests.support import TEST_SECRET

REFERENCE_FIELDS = ["success", "company_id", "whatsapp_connected", "whatsapp_phone", "integration_status",
                    "connected_at"]


@pytest.fixture
def connected(company_factory):
    made = company_factory(
        status=IntegrationStatus.ACTIVE,
        whatsapp_phone="+79001234567",
        whatsapp_connected_at=datetime(2024, 9, 16, 12, 0, tzinfo=UTC),
    )
    db.session.add(WhatsAppSession(company_id=made.id, status=SessionStatus.WORKING, gateway_session="s1"))
    db.session.commit()
    return made


def _status(client, company_id, **kwargs):
    return client.get(f"/marketplace/status/{company_id}", **kwargs)


@pytest.mark.parametrize("how", ["bearer", "query", "x-auth-token", "company-key", "company-key-bearer", "admin"])
def test_status_has_the_reference_fields_for_every_credential(client, connected, admin_headers, how):
    kwargs = {
        "bearer": {"headers": {"Authorization": f"Bearer {connected.token}"}},
        "query": {"query_string": {"token": connected.token}},
        "x-auth-token": {"headers": {"x-auth-token": connected.token}},
        "company-key": {"headers": {"X-API-Key": connected.api_key}},
        "company-key-bearer": {"headers": {"Authorization": f"Bearer {connected.api_key}"}},
        "admin": {"headers": admin_headers},
    }[how]
    response = _status(client, connected.id, **kwargs)
    assert response.status_code == 200, response.json
    body = response.json
    assert list(body)[:6] == REFERENCE_FIELDS
    assert body == {
        **body,
        "success": True,
        "company_id": connected.id,
        "whatsapp_connected": True,
        "whatsapp_phone": "+79001234567",
        "integration_status": "active",
        "connected_at": "2024-09-16T12:00:00Z",
        "session_status": "WORKING",
    }


def test_a_pending_company_is_not_connected(client, company_factory):
    made = company_factory()
    body = _status(client, made.id, headers={"X-API-Key": made.api_key}).json
    assert body["whatsapp_connected"] is False and body["integration_status"] == "pending"
    assert body["connected_at"] is None and body["whatsapp_phone"] is None and body["session_status"] is None


def test_status_needs_credentials(client, connected):
    response = _status(client, connected.id)
    assert response.status_code == 401 and response.json == {"success": False, "error": "Unauthorized"}


def test_unknown_key_is_401(client, connected):
    assert _status(client, connected.id, headers={"X-API-Key": "sk_nope"}).status_code == 401


def _forge(claims: dict, key: str = TEST_SECRET, algorithm: str = "HS256") -> str:
    return jwt.encode(claims, None if algorithm == "none" else key, algorithm=algorithm)


@pytest.mark.parametrize(
    "make_token",
    [
        pytest.param(lambda cid, now: _forge({"company_id": cid, "type": "connect", "iat": now, "exp": now + 60},
                                             algorithm="none"), id="alg-none"),
        pytest.param(lambda cid, now: _forge({"company_id": cid, "type": "connect", "iat": now, "exp": now + 60},
                                             key="a-different-secret-key-of-enough-length"), id="wrong-key"),
        pytest.param(lambda cid, now: _forge({"company_id": cid, "type": "connect", "iat": now - 99,
                                              "exp": now - 9}), id="expired"),
        pytest.param(lambda cid, now: _forge({"company_id": cid, "type": "connect", "iat": now}), id="no-exp"),
        pytest.param(lambda cid, now: _forge({"company_id": cid, "type": "session", "iat": now, "exp": now + 60}),
                     id="wrong-type"),
        pytest.param(lambda cid, now: "garbage", id="garbage"),
    ],
)
def test_token_attacks_are_401(client, connected, make_token):
    token = make_token(connected.id, int(time.time()))
    for kwargs in ({"headers": {"Authorization": f"Bearer {token}"}}, {"query_string": {"token": token}}):
        response = _status(client, connected.id, **kwargs)
        assert response.status_code == 401
        assert response.json == {"success": False, "error": "Недействительный токен"}


def test_tampered_claims_are_401(client, connected, company_factory):
    other = company_factory()
    header, _, signature = other.token.split(".")
    payload = connected.token.split(".")[1]
    response = _status(client, connected.id, query_string={"token": f"{header}.{payload}.{signature}"})
    assert response.status_code == 401


def test_another_companys_credentials_are_403(client, connected, company_factory):
    other = company_factory()
    for kwargs in ({"query_string": {"token": other.token}}, {"headers": {"X-API-Key": other.api_key}}):
        response = _status(client, connected.id, **kwargs)
        assert response.status_code == 403
        # ...and they do not learn whether an id exists.
        assert _status(client, 99999, **kwargs).status_code == 403


def test_unknown_company_is_404_for_the_admin_and_for_its_own_token(client, ctx, admin_headers):
    response = _status(client, 99999, headers=admin_headers)
    assert response.status_code == 404 and response.json == {"success": False, "error": "Компания не найдена"}
    token = tokens.issue_connect_token(99998, 1)
    assert _status(client, 99998, query_string={"token": token}).status_code == 404


def test_companies_needs_the_admin_key(client, company_factory):
    made = company_factory()
    bearer = {"Authorization": f"Bearer {made.token}"}
    for headers in ({}, {"X-API-Key": made.api_key}, {"X-API-Key": "sk_wrong"}, bearer):
        response = client.get("/marketplace/companies", headers=headers)
        assert response.status_code == 401 and response.json == {"success": False, "error": "Unauthorized"}


def test_companies_stats_map_every_status_onto_the_reference_buckets(client, company_factory, admin_headers):
    spread = {
        IntegrationStatus.PENDING: 2, IntegrationStatus.CONNECTING: 1, IntegrationStatus.CONNECTED: 1,
        IntegrationStatus.ACTIVE: 3, IntegrationStatus.ACTIVATION_FAILED: 1, IntegrationStatus.DISCONNECTED: 1,
        IntegrationStatus.FROZEN: 1, IntegrationStatus.UNINSTALLED: 1,
    }
    made = [company_factory(status=status) for status, n in spread.items() for _ in range(n)]
    now = datetime.now(UTC)
    events = [
        (made[0].id, "connected", now - timedelta(hours=1)),
        (made[0].id, "connected", now - timedelta(hours=2)),  # the same company counts once
        (made[1].id, "connected", now - timedelta(hours=23)),
        (made[2].id, "connected", now - timedelta(hours=25)),  # too old
        (made[3].id, "disconnected", now - timedelta(minutes=5)),
        (made[4].id, "uninstalled", now - timedelta(minutes=5)),
        (made[5].id, "disconnected", now - timedelta(days=3)),  # too old
        (made[6].id, "activated", now - timedelta(minutes=1)),
    ]
    for company_id, kind, at in events:
        db.session.add(CompanyEvent(company_id=company_id, kind=kind, created_at=at))
    db.session.commit()

    response = client.get("/marketplace/companies", headers=admin_headers)
    assert response.status_code == 200
    body = response.json
    assert body["success"] is True
    stats = body["stats"]
    assert list(stats)[:6] == ["total", "connected", "pending", "disconnected", "by_status", "last_24h"]
    assert (stats["total"], stats["connected"], stats["pending"], stats["disconnected"]) == (11, 4, 4, 3)
    assert stats["by_status"] == {"active": 4, "pending": 4, "inactive": 3}
    assert stats["last_24h"]["new_connections"] == 2 and stats["last_24h"]["disconnections"] == 2
    assert stats["last_24h"]["activations"] == 1
    assert stats["by_integration_status"] == spread
    assert stats["total"] == stats["connected"] + stats["pending"] + stats["disconnected"]


def test_empty_stats(client, ctx, admin_headers):
    stats = client.get("/marketplace/companies", headers=admin_headers).json["stats"]
    assert stats["total"] == 0 and stats["by_status"] == {"active": 0, "pending": 0, "inactive": 0}
    assert stats["last_24h"]["new_connections"] == 0 and stats["last_24h"]["disconnections"] == 0


def test_a_rejected_callback_leaves_whatsapp_reported_as_linked(client, connected, ctx):
    from models import Company

    company = db.session.get(Company, connected.id)
    company.integration_status = IntegrationStatus.ACTIVATION_FAILED
    db.session.commit()
    body = _status(client, connected.id, headers={"X-API-Key": connected.api_key}).json
    assert body["integration_status"] == "activation_failed" and body["whatsapp_connected"] is True
