"""The salon page's sign-in: a connect token or a signed install redirect becomes a short-lived HttpOnly
cookie for one company; changes need its CSRF token; sign-out ends it everywhere."""

from __future__ import annotations

import re

import pytest

from models import Company, CompanyEvent, IntegrationStatus, db
from services.access import salon_sessions, tokens
from services.messaging import settings
from services.platform.errors import Unauthorized
from tests.fakes.yclients import signed_user_data

USER = {"id": 321, "name": "Ольга", "phone": "79001112233", "email": "olga@example.com", "is_approved": True,
        "avatar": "", "salon_name": "Салон Ольги"}


def _sign_in(client, token: str):
    return client.get("/marketplace/salon", query_string={"token": token})


def _cookie(response) -> str:
    header = next(h for h in response.headers.getlist("Set-Cookie") if h.startswith(salon_sessions.COOKIE + "="))
    return header


def _csrf(client) -> str:
    page = client.get("/marketplace/salon").get_data(as_text=True)
    found = re.search(r'name="csrf_token" value="([^"]+)"', page)
    assert found, page[:500]
    return found.group(1)


def test_a_connect_token_becomes_an_httponly_lax_cookie_and_leaves_the_url(client, company_factory):
    made = company_factory(title="Салон у моря", status=IntegrationStatus.ACTIVE, whatsapp_phone="+79001234567")
    response = _sign_in(client, made.token)
    assert response.status_code == 303
    assert response.headers["Location"] == "/marketplace/salon"
    cookie = _cookie(response)
    assert "HttpOnly" in cookie and "SameSite=Lax" in cookie and "Path=/marketplace/salon" in cookie
    assert "Max-Age=7200" in cookie
    assert made.token not in cookie
    assert response.headers["Referrer-Policy"] == "same-origin" and response.headers["Cache-Control"] == "no-store"
    page = client.get("/marketplace/salon")
    assert page.status_code == 200
    body = page.get_data(as_text=True)
    assert "Салон у моря" in body and "+79001234567" in body
    assert made.token not in body  # the page's live panel gets a token of its own


def test_without_a_session_or_with_a_bad_token_the_page_asks_to_sign_in(client, company_factory):
    assert client.get("/marketplace/salon").status_code == 401
    assert _sign_in(client, "forged").status_code == 401
    client.set_cookie(salon_sessions.COOKIE, "made-up", path="/marketplace/salon")
    assert client.get("/marketplace/salon").status_code == 401


def test_a_session_opens_only_its_own_company(client, company_factory, ctx):
    first = company_factory(title="Первый", status=IntegrationStatus.ACTIVE)
    second = company_factory(title="Второй", status=IntegrationStatus.ACTIVE)
    _sign_in(client, first.token)
    body = client.get("/marketplace/salon").get_data(as_text=True)
    assert "Первый" in body and "Второй" not in body
    # Its live token is for its company only.
    token = re.search(r'data-token="([^"]+)"', body).group(1)
    assert tokens.verify_connect_token(token)["company_id"] == first.id
    # The cookie is no API credential: another company's REST API refuses it.
    assert client.get(f"/marketplace/status/{second.id}").status_code == 401


def test_changes_need_the_csrf_token_and_a_same_site_request(client, company_factory, ctx):
    made = company_factory(status=IntegrationStatus.ACTIVE, whatsapp_phone="+79001234567")
    _sign_in(client, made.token)
    csrf = _csrf(client)
    assert client.post("/marketplace/salon/disconnect").status_code == 403
    assert client.post("/marketplace/salon/disconnect", data={"csrf_token": "x" * 43}).status_code == 403
    refused = client.post("/marketplace/salon/disconnect", data={"csrf_token": csrf},
                          headers={"Origin": "https://evil.example"})
    assert refused.status_code == 403
    refused = client.post("/marketplace/salon/disconnect", headers={"X-CSRF-Token": csrf,
                                                                   "Sec-Fetch-Site": "cross-site"})
    assert refused.status_code == 403 and refused.get_json()["error"] == salon_sessions.BAD_CSRF
    assert db.session.get(Company, made.id).integration_status == IntegrationStatus.ACTIVE
    done = client.post("/marketplace/salon/disconnect", data={"csrf_token": csrf},
                       headers={"Origin": "http://localhost", "Sec-Fetch-Site": "same-origin"})
    assert done.status_code == 303
    db.session.expire_all()
    assert db.session.get(Company, made.id).integration_status == IntegrationStatus.DISCONNECTED
    reasons = [e.data.get("reason") for e in db.session.query(CompanyEvent).filter_by(company_id=made.id,
                                                                                         kind="disconnected")]
    assert reasons == ["owner"]


def test_sign_out_ends_the_session_even_for_a_copied_cookie(client, app, company_factory):
    made = company_factory(status=IntegrationStatus.ACTIVE)
    value = _cookie(_sign_in(client, made.token)).split(";")[0].split("=", 1)[1]
    page = client.get("/marketplace/salon").get_data(as_text=True)
    csrf = re.search(r'name="csrf_token" value="([^"]+)"', page).group(1)
    live = re.search(r'data-token="([^"]+)"', page).group(1)
    assert client.get(f"/marketplace/status/{made.id}", headers={"Authorization": f"Bearer {live}"}).status_code == 200
    # The page's live token is no sign-in link: it never opens a session of its own.
    assert app.test_client().get("/marketplace/salon", query_string={"token": live}).status_code == 401
    out = client.post("/marketplace/salon/signout", data={"csrf_token": csrf})
    assert out.status_code == 200 and "Max-Age=0" in _cookie(out)
    other = app.test_client()
    other.set_cookie(salon_sessions.COOKIE, value, path="/marketplace/salon")
    assert other.get("/marketplace/salon").status_code == 401
    # The live token died with the session; the salon's own connect link still works.
    assert client.get(f"/marketplace/status/{made.id}", headers={"Authorization": f"Bearer {live}"}).status_code == 401
    with pytest.raises(Unauthorized):
        tokens.verify_connect_token(live)
    assert tokens.verify_connect_token(made.token)["company_id"] == made.id


def test_an_uninstalled_salon_loses_its_sessions(client, company_factory, ctx):
    made = company_factory(status=IntegrationStatus.ACTIVE)
    _sign_in(client, made.token)
    company = db.session.get(Company, made.id)
    company.integration_status = IntegrationStatus.UNINSTALLED
    db.session.commit()
    assert client.get("/marketplace/salon").status_code == 401


@pytest.mark.parametrize("linked", [True, False])
def test_the_install_redirect_signs_in_to_the_salon_page_once_whatsapp_is_linked(client, company_factory, linked):
    status = IntegrationStatus.ACTIVE if linked else IntegrationStatus.PENDING
    made = company_factory(status=status)
    user_data, sign = signed_user_data(USER)
    response = client.get("/marketplace/install", query_string={"salon_id": made.salon_id, "user_data": user_data,
                                                                "user_data_sign": sign})
    if linked:
        assert response.status_code == 303 and response.headers["Location"] == "/marketplace/salon"
        assert _cookie(response).startswith(salon_sessions.COOKIE + "=")
        assert client.get("/marketplace/salon").status_code == 200
    else:
        assert response.status_code == 302 and response.headers["Location"].startswith("/marketplace/connect?")


def _signed_in(client, company_factory, **fields):
    made = company_factory(status=IntegrationStatus.ACTIVE, whatsapp_phone="+79001234567", **fields)
    _sign_in(client, made.token)
    return made, _csrf(client)


def test_a_template_with_an_unknown_placeholder_is_refused_inline_and_a_valid_one_is_saved(client, company_factory,
                                                                                          ctx):
    made, csrf = _signed_in(client, company_factory, title="Салон Лето")
    refused = client.post("/marketplace/salon/templates", data={
        "csrf_token": csrf, "kind": "reminder", "text": "Ждём вас, {nickname}!", "action": "save"})
    assert refused.status_code == 422
    page = refused.get_data(as_text=True)
    assert "Неизвестная подстановка {nickname}" in page and "Ждём вас, {nickname}!" in page
    saved = client.post("/marketplace/salon/templates", data={
        "csrf_token": csrf, "kind": "reminder", "text": "{client_name}, до встречи в {salon} в {time}!",
        "action": "save"})
    assert saved.status_code == 303 and saved.headers["Location"].endswith("#templates")
    page = client.get("/marketplace/salon").get_data(as_text=True)
    assert "Анна, до встречи в Салон Лето в 15:00!" in page  # the preview of a sample booking
    reset = client.post("/marketplace/salon/templates", data={"csrf_token": csrf, "kind": "reminder",
                                                              "action": "reset"})
    assert reset.status_code == 303
    assert "до встречи в Салон Лето" not in client.get("/marketplace/salon").get_data(as_text=True)


def test_the_preview_answers_the_page_script_with_the_text_or_the_problem(client, company_factory):
    _made, csrf = _signed_in(client, company_factory, title="Салон Лето")
    headers = {"X-CSRF-Token": csrf}
    good = client.post("/marketplace/salon/preview", json={"kind": "reminder", "template": "Привет, {client_name}"},
                       headers=headers)
    assert good.status_code == 200 and good.get_json()["text"] == "Привет, Анна"
    bad = client.post("/marketplace/salon/preview", json={"kind": "reminder", "template": "{oops}"}, headers=headers)
    assert bad.status_code == 400 and "Неизвестная подстановка {oops}" in bad.get_json()["errors"]["template"]
    assert client.post("/marketplace/salon/preview", json={"kind": "reminder"}).status_code == 403


def test_settings_are_saved_from_the_form_and_problems_shown_by_their_field(client, company_factory, ctx):
    made, csrf = _signed_in(client, company_factory)
    form = {"csrf_token": csrf, "enabled.booking_created": "on", "enabled.reminder": "on",
            "reminder.0.when": "3", "reminder.0.kind": "reminder", "reminder.1.when": "19:00",
            "reminder.1.kind": "confirmation_request", "quiet.start": "22:00", "quiet.end": "08:30",
            "timezone": "Asia/Yekaterinburg", "contact_phone": "8 (900) 111-22-33"}
    assert client.post("/marketplace/salon/settings", data=form).status_code == 303
    stored = settings.serialise(db.session.get(Company, made.id))
    assert stored["timezone"] == "Asia/Yekaterinburg" and stored["contact_phone"] == "+79001112233"
    assert stored["quiet_hours"] == {"start": "22:00", "end": "08:30"}
    assert [r.get("hours_before") or r.get("day_before_at") for r in stored["reminders"]] == [3, "19:00"]
    assert stored["enabled"]["booking_created"] and not stored["enabled"]["booking_cancelled"]
    refused = client.post("/marketplace/salon/settings", data={**form, "timezone": "Mars/Base", "quiet.end": "25:00",
                                                               "reminder.0.when": "99"})
    assert refused.status_code == 422
    page = refused.get_data(as_text=True)
    assert 'id="error-timezone"' in page and 'id="error-quiet_hours-end"' in page and 'id="error-reminders-0"' in page
    assert 'value="Mars/Base"' in page  # what was typed stays in the form
    db.session.expire_all()
    assert settings.serialise(db.session.get(Company, made.id))["timezone"] == "Asia/Yekaterinburg"
