"""POST /marketplace/register: validation, keys, connect URL, re-registration and proof rules."""

from __future__ import annotations

import threading
from urllib.parse import parse_qs, urlsplit

import pytest

from models import ApiKey, Company, CompanyEvent, IntegrationStatus, db
from services.access import api_keys, tokens
from services.companies import installation
from services.companies.registration import (
    ALREADY_REGISTERED,
    BAD_EMAIL,
    BAD_JSON,
    BAD_SALON_ID,
    CONNECT_ONLY,
    MISSING_SALON_ID,
    OTHER_USER,
    PROOF_REQUIRED,
)
from services.phones import BAD_PHONE
from tests.fakes.yclients import APPLICATION_ID, signed_user_data


@pytest.fixture(scope="module")
def open_app(make_app):
    """Development mode: no partner token, so a first registration is open."""
    return make_app(yclients_partner_token="")


@pytest.fixture
def open_client(open_app):
    return open_app.test_client()


def test_registration_answers_the_reference_fields(client, ctx, admin_headers):
    body = {"salon_id": 962302, "phone": "+79001234567", "email": "salon@example.com"}
    response = client.post("/marketplace/register", json=body, headers=admin_headers)
    assert response.status_code == 201, response.json
    data = response.json
    assert list(data)[:6] == ["success", "company_id", "salon_id", "api_key", "connect_url", "webhook_url"]
    assert data["success"] is True and data["salon_id"] == 962302
    assert data["message"] == "Компания успешно зарегистрирована"
    assert data["api_key"].startswith("sk_") and len(data["api_key"]) >= 35

    url = urlsplit(data["connect_url"])
    query = parse_qs(url.query)
    assert url.path == "/marketplace/connect" and not url.netloc
    assert query["company"] == [str(data["company_id"])] and query["salon"] == ["962302"]
    claims = tokens.verify_connect_token(query["token"][0])
    assert claims["company_id"] == data["company_id"] and claims["salon_id"] == 962302

    company = db.session.get(Company, data["company_id"])
    assert company.phone == "+79001234567" and company.email == "salon@example.com"
    assert company.integration_status == IntegrationStatus.PENDING
    assert data["webhook_url"].endswith(f"/marketplace/webhook/{company.id}?secret=" + data["webhook_url"][-32:])
    stored = db.session.query(ApiKey).filter_by(company_id=company.id).one()
    assert stored.key_hash == api_keys.hash_key(data["api_key"]) and data["api_key"] not in stored.key_hash
    assert api_keys.authenticate(data["api_key"]).company_id == company.id
    assert [e.kind for e in db.session.query(CompanyEvent).filter_by(company_id=company.id)] == ["registered"]


def test_development_mode_registration_is_open(open_client, ctx):
    response = open_client.post("/marketplace/register", json={"salon_id": 5001})
    assert response.status_code == 201 and response.json["company_id"]


def test_partner_token_makes_first_registration_need_proof(client):
    response = client.post("/marketplace/register", json={"salon_id": 5002})
    assert response.status_code == 401
    assert response.json == {"success": False, "error": PROOF_REQUIRED}


def test_a_company_key_is_no_proof_for_a_new_salon(client, company_factory):
    other = company_factory()
    response = client.post("/marketplace/register", json={"salon_id": 5003}, headers={"X-API-Key": other.api_key})
    assert response.status_code == 401


@pytest.fixture
def yclients(fake_yclients):
    fake_yclients.reset()
    yield fake_yclients
    fake_yclients.reset()


def test_a_valid_yclients_signature_registers(client, ctx, yclients):
    yclients.install(5004)
    user_data, sign = signed_user_data({"id": 77, "name": "Анна", "email": "a@example.com", "salon_name": "Салон"})
    body = {"salon_id": 5004, "user_data": user_data, "user_data_sign": sign}
    response = client.post("/marketplace/register", json=body)
    assert response.status_code == 201
    company = db.session.get(Company, response.json["company_id"])
    assert company.marketplace_user_id == 77 and company.marketplace_user_name == "Анна"
    assert company.title == "Салон"


def test_a_wrong_signature_is_refused(client):
    user_data, _ = signed_user_data({"id": 1})
    _, other_sign = signed_user_data({"id": 2})
    response = client.post("/marketplace/register", json={"salon_id": 5005, "user_data": user_data,
                                                          "user_data_sign": other_sign})
    assert response.status_code == 403 and response.json["error"] == "Неверная подпись YClients"


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({}, MISSING_SALON_ID),
        ({"phone": "+79001234567"}, MISSING_SALON_ID),
        ({"salon_id": None}, MISSING_SALON_ID),
        ({"salon_id": ""}, MISSING_SALON_ID),
        ({"salon_id": 0}, BAD_SALON_ID),
        ({"salon_id": -5}, BAD_SALON_ID),
        ({"salon_id": 1.5}, BAD_SALON_ID),
        ({"salon_id": "12a"}, BAD_SALON_ID),
        ({"salon_id": True}, BAD_SALON_ID),
        ({"salon_id": [1]}, BAD_SALON_ID),
        ({"salon_id": 2**63}, BAD_SALON_ID),
        ({"salon_id": 1, "phone": "123456789"}, BAD_PHONE),
        ({"salon_id": 1, "phone": "+7900123456789012"}, BAD_PHONE),
        ({"salon_id": 1, "phone": "+7900abc4567"}, BAD_PHONE),
        ({"salon_id": 1, "phone": 79001234567}, BAD_PHONE),
        ({"salon_id": 1, "email": "salon"}, BAD_EMAIL),
        ({"salon_id": 1, "email": "salon@example"}, BAD_EMAIL),
        ({"salon_id": 1, "email": "sa lon@example.com"}, BAD_EMAIL),
        ({"salon_id": 1, "email": 5}, BAD_EMAIL),
        ({"salon_id": 1, "email": "sa\x1blon@example.com"}, BAD_EMAIL),
        ({"salon_id": 1, "email": "salon@example.com\u2028"}, BAD_EMAIL),
        ({"salon_id": 1, "email": "sa\u0085lon@example.com"}, BAD_EMAIL),
        # The first failing field decides the message.
        ({"salon_id": -1, "phone": "1", "email": "x"}, BAD_SALON_ID),
        ({"salon_id": 1, "phone": "1", "email": "x"}, BAD_PHONE),
    ],
)
def test_validation_rules(client, admin_headers, body, message):
    response = client.post("/marketplace/register", json=body, headers=admin_headers)
    assert response.status_code == 400
    assert response.json == {"success": False, "error": message}


@pytest.mark.parametrize("raw", [b"{not json", b"[1, 2]", b'"962302"', b"\xff\xfe"])
def test_malformed_json_is_a_400(client, admin_headers, raw):
    response = client.post(
        "/marketplace/register", data=raw, headers={**admin_headers, "Content-Type": "application/json"}
    )
    assert response.status_code == 400 and response.json == {"success": False, "error": BAD_JSON}


def test_accepted_forms_are_normalised(client, ctx, admin_headers):
    body = {"salon_id": "962303", "phone": "+7 (900) 123-45-67", "email": " salon@example.com "}
    response = client.post("/marketplace/register", json=body, headers=admin_headers)
    assert response.status_code == 201
    company = db.session.get(Company, response.json["company_id"])
    assert company.salon_id == 962303 and company.phone == "+79001234567" and company.email == "salon@example.com"


def test_re_registration_without_proof_is_a_conflict(client, company_factory):
    made = company_factory()
    stranger = company_factory()
    for headers in ({}, {"X-API-Key": stranger.api_key}, {"X-API-Key": "sk_unknown"}):
        response = client.post("/marketplace/register", json={"salon_id": made.salon_id}, headers=headers)
        assert response.status_code == 409
        assert response.json == {"success": False, "error": ALREADY_REGISTERED}


def test_a_signature_for_a_new_salon_needs_yclients_to_report_the_application_installed(client, ctx, yclients):
    user_data, sign = signed_user_data({"id": 78, "name": "Анна"})
    body = {"salon_id": 5006, "user_data": user_data, "user_data_sign": sign}
    response = client.post("/marketplace/register", json=body)
    assert response.status_code == 403 and response.json == {"success": False, "error": installation.NOT_INSTALLED}
    assert db.session.query(Company).filter_by(salon_id=5006).count() == 0
    assert [call.path for call in yclients.calls_for(5006)] == [
        f"/marketplace/salon/5006/application/{APPLICATION_ID}"]


def test_a_signature_for_a_salon_another_yclients_user_installed_gets_403(client, ctx, company_factory):
    victim = company_factory(phone="+79001112233", email="owner@victim.example", marketplace_user_id=42)
    user_data, sign = signed_user_data({"id": 666, "name": "Чужой", "email": "evil@example.com"})
    body = {"salon_id": victim.salon_id, "phone": "+79990000000", "email": "evil@example.com",
            "user_data": user_data, "user_data_sign": sign}
    response = client.post("/marketplace/register", json=body)
    assert response.status_code == 403 and response.json == {"success": False, "error": OTHER_USER}
    assert api_keys.authenticate(victim.api_key).company_id == victim.id
    company = db.session.get(Company, victim.id, populate_existing=True)
    assert (company.phone, company.email, company.marketplace_user_id) == ("+79001112233", "owner@victim.example", 42)
    assert [e.kind for e in db.session.query(CompanyEvent).filter_by(company_id=victim.id)] == []


def test_a_signature_for_a_salon_without_a_yclients_user_gets_no_key(client, ctx, company_factory):
    victim = company_factory(phone="+79001112233", email="owner@victim.example")
    user_data, sign = signed_user_data({"id": 666, "name": "Чужой", "email": "evil@example.com"})
    body = {"salon_id": victim.salon_id, "phone": "+79990000000", "email": "evil@example.com",
            "user_data": user_data, "user_data_sign": sign}
    response = client.post("/marketplace/register", json=body)
    assert response.status_code == 200, response.json
    assert response.json["api_key"] is None and response.json["webhook_url"] is None
    assert response.json["company_id"] == victim.id and response.json["message"] == CONNECT_ONLY
    token = parse_qs(urlsplit(response.json["connect_url"]).query)["token"][0]
    assert tokens.verify_connect_token(token)["company_id"] == victim.id
    assert api_keys.authenticate(victim.api_key).company_id == victim.id
    company = db.session.get(Company, victim.id, populate_existing=True)
    assert (company.phone, company.email, company.marketplace_user_id) == ("+79001112233", "owner@victim.example", None)
    assert company.marketplace_user_name is None
    kinds = [e.kind for e in db.session.query(CompanyEvent).filter_by(company_id=victim.id)]
    assert kinds == ["reattached"]


@pytest.mark.parametrize("proof", ["own_key", "admin"])
def test_re_registration_with_proof_issues_a_new_key(client, ctx, company_factory, admin_headers, proof):
    made = company_factory()
    first = client.post("/marketplace/register", json={"salon_id": made.salon_id}, headers=admin_headers)
    old_key = first.json["api_key"]
    body: dict = {"salon_id": made.salon_id, "phone": "+79990000000"}
    headers = {"X-API-Key": old_key} if proof == "own_key" else admin_headers
    response = client.post("/marketplace/register", json=body, headers=headers)
    assert response.status_code == 200, response.json
    assert response.json["company_id"] == made.id and response.json["api_key"] != old_key
    assert response.json["message"] == "Компания уже была зарегистрирована: выдан новый API-ключ"
    assert api_keys.authenticate(old_key) is None
    assert api_keys.authenticate(response.json["api_key"]).company_id == made.id
    assert api_keys.authenticate(made.api_key) is not None  # keys with other labels are untouched
    assert db.session.get(Company, made.id).phone == "+79990000000"


def test_re_registration_reactivates_an_uninstalled_salon(client, ctx, company_factory, admin_headers):
    made = company_factory(status=IntegrationStatus.UNINSTALLED, webhook_secret_generation=-1)
    response = client.post("/marketplace/register", json={"salon_id": made.salon_id}, headers=admin_headers)
    assert response.status_code == 200
    company = db.session.get(Company, made.id)
    db.session.refresh(company)
    assert company.integration_status == IntegrationStatus.PENDING
    assert response.json["webhook_url"] and "secret=" in response.json["webhook_url"]


def test_concurrent_open_registrations_create_one_company(open_app, ctx):
    barrier = threading.Barrier(3)
    statuses: list[int] = []

    def register() -> None:
        with open_app.test_client() as c:
            barrier.wait()
            statuses.append(c.post("/marketplace/register", json={"salon_id": 5011}).status_code)

    threads = [threading.Thread(target=register) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(statuses) == [201, 409, 409]
    db.session.rollback()
    assert db.session.query(Company).filter_by(salon_id=5011).count() == 1
