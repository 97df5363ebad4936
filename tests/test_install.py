"""GET /marketplace/install: YClients' signed redirect, checked in constant time, never a silent fallback."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from urllib.parse import parse_qs, urlsplit

import pytest

from models import ApiKey, Company, CompanyEvent, IntegrationStatus, db
from services.access import api_keys, install_signature, tokens
from services.companies import installation, registration
from tests.fakes import yclients as fy
from tests.fakes.yclients import PARTNER_TOKEN, signed_user_data

USER = {"id": 123, "name": "Мария", "phone": "79001234567", "email": "owner@example.com",
        "is_approved": True, "avatar": "", "salon_name": "Салон Мария"}


@pytest.fixture(autouse=True)
def yclients(fake_yclients):
    """The fake partner API, with our application installed in the salons these tests install."""
    fake_yclients.reset()
    for salon_id in (700001, 700002, 700003, 700004, 700011):
        fake_yclients.install(salon_id)
    yield fake_yclients
    fake_yclients.reset()


def _install(client, **params):
    return client.get("/marketplace/install", query_string=params)


def _connect_params(response) -> dict[str, str]:
    assert response.status_code == 302, response.get_data(as_text=True)
    url = urlsplit(response.headers["Location"])
    assert url.path == "/marketplace/connect"
    return {k: v[0] for k, v in parse_qs(url.query).items()}


def test_a_signed_install_registers_the_salon_and_redirects_to_its_connect_page(client, ctx):
    user_data, sign = signed_user_data(USER)
    params = _connect_params(_install(client, salon_id=700001, user_data=user_data, user_data_sign=sign))
    company = db.session.scalar(db.session.query(Company).filter_by(salon_id=700001).statement)
    assert params["company"] == str(company.id) and params["salon"] == "700001"
    assert tokens.verify_connect_token(params["token"])["company_id"] == company.id
    assert company.integration_status == IntegrationStatus.PENDING
    assert (company.marketplace_user_id, company.marketplace_user_name) == (123, "Мария")
    assert (company.marketplace_user_phone, company.marketplace_user_email) == ("79001234567", "owner@example.com")
    assert company.title == "Салон Мария"
    kinds = [e.kind for e in db.session.query(CompanyEvent).filter_by(company_id=company.id)]
    assert kinds == ["registered"]


def test_salon_ids_array_is_the_fallback(client, ctx):
    user_data, sign = signed_user_data(USER)
    response = client.get(
        f"/marketplace/install?salon_ids[]=700002&salon_ids[]=700099&user_data={user_data}&user_data_sign={sign}"
        .replace("+", "%2B")
    )
    assert _connect_params(response)["salon"] == "700002"


def test_the_same_link_works_again_for_the_same_salon(client, ctx):
    user_data, sign = signed_user_data(USER)
    first = _connect_params(_install(client, salon_id=700003, user_data=user_data, user_data_sign=sign))
    again = _connect_params(_install(client, salon_id=700003, user_data=user_data, user_data_sign=sign.upper()))
    assert first["company"] == again["company"]
    assert db.session.query(Company).filter_by(salon_id=700003).count() == 1


def test_a_signature_cannot_be_moved_to_another_salon(client, ctx):
    user_data, sign = signed_user_data(USER)
    _connect_params(_install(client, salon_id=700004, user_data=user_data, user_data_sign=sign))
    response = _install(client, salon_id=700005, user_data=user_data, user_data_sign=sign)
    assert response.status_code == 403 and install_signature.SIGNATURE_REUSED in response.get_data(as_text=True)
    assert db.session.query(Company).filter_by(salon_id=700005).count() == 0


def _forged_variants() -> list:
    raw = json.dumps(USER).encode()
    user_data = base64.b64encode(raw).decode()
    good = hmac.new(PARTNER_TOKEN.encode(), raw, hashlib.sha256).hexdigest()
    tampered = base64.b64encode(json.dumps({**USER, "id": 666}).encode()).decode()
    over_base64_text = hmac.new(PARTNER_TOKEN.encode(), user_data.encode(), hashlib.sha256).hexdigest()
    wrong_key = hmac.new(b"another-partner-token", raw, hashlib.sha256).hexdigest()
    return [
        pytest.param({"user_data": user_data}, install_signature.MISSING_SIGNATURE, id="missing-sign"),
        pytest.param({"user_data_sign": good}, install_signature.MISSING_SIGNATURE, id="missing-user-data"),
        pytest.param({}, install_signature.MISSING_SIGNATURE, id="nothing"),
        pytest.param({"user_data": tampered, "user_data_sign": good}, install_signature.BAD_SIGNATURE,
                     id="tampered-data"),
        pytest.param({"user_data": user_data, "user_data_sign": over_base64_text}, install_signature.BAD_SIGNATURE,
                     id="signed-base64-text"),
        pytest.param({"user_data": user_data, "user_data_sign": wrong_key}, install_signature.BAD_SIGNATURE,
                     id="wrong-key"),
        pytest.param({"user_data": user_data, "user_data_sign": good[:-2]}, install_signature.BAD_SIGNATURE,
                     id="truncated"),
        pytest.param({"user_data": "!!!not base64!!!", "user_data_sign": good}, install_signature.BAD_SIGNATURE,
                     id="not-base64"),
    ]


@pytest.mark.parametrize(("params", "message"), _forged_variants())
def test_bad_or_missing_signatures_get_a_403_page(client, ctx, params, message):
    response = _install(client, salon_id=700010, **params)
    assert response.status_code == 403
    assert response.content_type.startswith("text/html")
    assert message in response.get_data(as_text=True)
    assert db.session.query(Company).filter_by(salon_id=700010).count() == 0


def test_url_safe_unpadded_user_data_is_accepted(client, ctx):
    raw = json.dumps({"id": 5, "name": "Олег"}).encode() + b" \xfb\xff"  # url-safe alphabet
    user_data = base64.urlsafe_b64encode(raw).decode().rstrip("=")
    sign = hmac.new(PARTNER_TOKEN.encode(), raw, hashlib.sha256).hexdigest()
    _connect_params(_install(client, salon_id=700011, user_data=user_data, user_data_sign=sign))


def test_a_missing_salon_is_a_400_page(client):
    user_data, sign = signed_user_data(USER)
    response = _install(client, user_data=user_data, user_data_sign=sign)
    assert response.status_code == 400 and "salon_id" in response.get_data(as_text=True)


def test_without_a_partner_token_installs_are_refused(make_app, ctx):
    open_app = make_app(yclients_partner_token="")
    user_data, sign = signed_user_data(USER)
    response = _install(open_app.test_client(), salon_id=700012, user_data=user_data, user_data_sign=sign)
    assert response.status_code == 403 and install_signature.NOT_CONFIGURED in response.get_data(as_text=True)


def test_reinstall_of_an_uninstalled_salon_starts_it_again(client, ctx, company_factory, yclients):
    made = company_factory(status=IntegrationStatus.UNINSTALLED, webhook_secret_generation=-1)
    yclients.install(made.salon_id, "pending")
    user_data, sign = signed_user_data(USER)
    params = _connect_params(_install(client, salon_id=made.salon_id, user_data=user_data, user_data_sign=sign))
    assert params["company"] == str(made.id)
    company = db.session.get(Company, made.id)
    db.session.refresh(company)
    assert company.integration_status == IntegrationStatus.PENDING
    assert company.webhook_secret_generation == 2
    kinds = {e.kind for e in db.session.query(CompanyEvent).filter_by(company_id=made.id)}
    assert "reinstalled" in kinds


def _kinds(company_id: int) -> list[str]:
    return [e.kind for e in db.session.query(CompanyEvent).filter_by(company_id=company_id).order_by(CompanyEvent.id)]


def test_a_signature_for_a_salon_another_yclients_user_installed_is_refused_and_changes_nothing(
    client, ctx, company_factory
):
    victim = company_factory(title="Салон Жертвы", email="owner@victim.example", marketplace_user_id=42,
                             marketplace_user_name="Владелец")
    attacker, sign = signed_user_data({**USER, "id": 666, "name": "Чужой", "salon_name": "Чужой салон"})
    response = _install(client, salon_id=victim.salon_id, user_data=attacker, user_data_sign=sign)
    assert response.status_code == 403 and "Location" not in response.headers
    assert registration.OTHER_USER in response.get_data(as_text=True)
    company = db.session.get(Company, victim.id, populate_existing=True)
    assert (company.title, company.email) == ("Салон Жертвы", "owner@victim.example")
    assert (company.marketplace_user_id, company.marketplace_user_name) == (42, "Владелец")
    assert api_keys.authenticate(victim.api_key).company_id == victim.id
    assert db.session.query(ApiKey).filter_by(company_id=victim.id).count() == 1
    assert _kinds(victim.id) == []


def test_a_signature_for_a_salon_registered_without_a_yclients_user_opens_only_its_connect_page(
    client, ctx, company_factory
):
    registered_by_admin = company_factory(title="Салон", email="owner@salon.example")
    user_data, sign = signed_user_data({**USER, "id": 777})
    params = _connect_params(
        _install(client, salon_id=registered_by_admin.salon_id, user_data=user_data, user_data_sign=sign))
    assert params["company"] == str(registered_by_admin.id)
    company = db.session.get(Company, registered_by_admin.id, populate_existing=True)
    assert (company.title, company.email, company.marketplace_user_id) == ("Салон", "owner@salon.example", None)
    assert db.session.query(ApiKey).filter_by(company_id=registered_by_admin.id).count() == 1
    event = db.session.query(CompanyEvent).filter_by(company_id=registered_by_admin.id, kind="reattached").one()
    assert event.data == {"source": "install", "marketplace_user_id": 777, "same_user": False}


def test_the_owner_coming_back_is_recorded_as_the_same_user(client, ctx):
    user_data, sign = signed_user_data(USER)
    first = _connect_params(_install(client, salon_id=700001, user_data=user_data, user_data_sign=sign))
    _connect_params(_install(client, salon_id=700001, user_data=user_data, user_data_sign=sign))
    event = db.session.query(CompanyEvent).filter_by(company_id=int(first["company"]), kind="reattached").one()
    assert event.data["same_user"] is True


@pytest.mark.parametrize(
    ("answer", "status", "message"),
    [
        pytest.param(None, 403, installation.NOT_INSTALLED, id="not-installed"),
        pytest.param(fy.installation("freezed"), 403, installation.FROZEN, id="frozen"),
        pytest.param(fy.server_error(), 503, installation.UNREACHABLE, id="yclients-failing"),
        pytest.param(fy.slow(5), 503, installation.UNREACHABLE, id="yclients-too-slow"),
        pytest.param(fy.unauthorized(), 502, installation.REFUSED, id="token-refused"),
    ],
)
def test_a_first_install_needs_yclients_to_confirm_the_application_is_installed(
    make_app, yclients, answer, status, message
):
    app = make_app(yclients_timeout_seconds=0.5)
    if answer is not None:
        yclients.script(700020, answer)
    user_data, sign = signed_user_data(USER)
    response = _install(app.test_client(), salon_id=700020, user_data=user_data, user_data_sign=sign)
    assert response.status_code == status and message in response.get_data(as_text=True)
    [call] = yclients.calls_for(700020)
    assert call.method == "GET" and call.path == f"/marketplace/salon/700020/application/{fy.APPLICATION_ID}"
    with app.app_context():
        assert db.session.query(Company).filter_by(salon_id=700020).count() == 0


def test_an_uninstalled_salon_is_not_restarted_without_yclients_confirming_the_new_install(
    client, ctx, company_factory
):
    made = company_factory(status=IntegrationStatus.UNINSTALLED, webhook_secret_generation=-1)
    user_data, sign = signed_user_data(USER)
    response = _install(client, salon_id=made.salon_id, user_data=user_data, user_data_sign=sign)
    assert response.status_code == 403 and installation.NOT_INSTALLED in response.get_data(as_text=True)
    company = db.session.get(Company, made.id, populate_existing=True)
    assert company.integration_status == IntegrationStatus.UNINSTALLED and company.webhook_secret_generation == -1
    assert "reinstalled" not in _kinds(made.id)


def test_user_data_fields_are_stored_as_single_lines_within_their_columns(client, ctx):
    user = {**USER, "name": "Мария\n2030-01-01 INFO forged\x1b[2J", "phone": "7" * 40,
            "salon_name": "Салон\u2028Мария\x85", "email": "owner@example.com\r\n", "id": "123"}
    user_data, sign = signed_user_data(user)
    params = _connect_params(_install(client, salon_id=700001, user_data=user_data, user_data_sign=sign))
    company = db.session.get(Company, int(params["company"]))
    assert company.marketplace_user_name == "Мария 2030-01-01 INFO forged [2J"
    assert (company.marketplace_user_phone, company.marketplace_user_id) == ("7" * 32, 123)
    assert (company.title, company.marketplace_user_email) == ("Салон Мария", "owner@example.com")
