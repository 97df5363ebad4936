"""The connect page, its QR and pairing-code endpoints, the simulator's scan button, the gateway's events."""

from __future__ import annotations

import hashlib
import hmac
import logging
from typing import Any

from flask import Response, jsonify, render_template, request

from services.access import tokens
from services.access.webhook_secrets import verify_gateway_events_secret
from services.platform import runtime
from services.platform.errors import NotFound, Unauthorized
from services.whatsapp import codes, gateway, sessions
from web.bodies import json_object
from web.errors import error_response
from web.limits import public_limit
from web.marketplace import bp

log = logging.getLogger(__name__)


def _token_company(token: str | None) -> int:
    return int(tokens.verify_connect_token(token)["company_id"])


def _invalid_link() -> tuple[str, int]:
    page = render_template(
        "error.html", title="Ссылка недействительна", message="Недействительный токен",
        hint="Откройте страницу подключения заново из личного кабинета YClients.",
    )
    return page, 401


@bp.get("/connect")
@public_limit
def connect_page() -> Any:
    """The salon owner's page: live QR, pairing code, status; 401 page for a bad link."""
    token = request.args.get("token", "")
    try:
        claims = tokens.verify_connect_token(token)
        company = sessions.get_company(int(claims["company_id"]))
    except (Unauthorized, NotFound):
        return _invalid_link()
    ids = (request.args.get("company"), request.args.get("salon"))
    if ids != (str(company.id), str(company.salon_id)) or claims.get("salon_id") not in (None, company.salon_id):
        return _invalid_link()
    return render_template(
        "connect.html", token=token, company=company, simulator=gateway.simulator_active(),
        qr_limit=sessions.qr_timings()[2],
    )


@bp.get("/qr/<token>")
@public_limit
def qr_code(token: str) -> Any:
    """The reference's QR answer (``qr`` data URI, ``expires_in``); a clear answer once connected."""
    company_id = _token_company(token)
    try:
        answer = codes.obtain_qr(company_id)
    except codes.QrUnavailable as exc:
        return error_response(500, exc.message)
    return jsonify(success=True, **answer)


def _body_phone() -> Any:
    """The ``phone`` field of a JSON object body, if any (validated by the service)."""
    return json_object().get("phone")


@bp.post("/pairing-code/<token>")
@public_limit
def pairing_code(token: str) -> Response:
    """An 8-character pairing code for the phone number in the body (``{"phone"}``)."""
    answer = codes.obtain_pairing_code(_token_company(token), _body_phone())
    return jsonify(success=True, **answer)


@bp.post("/simulator/scan/<token>")
@public_limit
def simulate_scan(token: str) -> Response:
    """Simulator only (404 otherwise): the phone scans the QR shown on the page."""
    linked = gateway.simulate_scan(_token_company(token), _body_phone() or None)
    return jsonify(success=True, phone="+" + linked)


def _hmac_ok(key: str | None) -> bool:
    """WAHA's signature of the raw body (``X-Webhook-Hmac``, HMAC-SHA512) checked in constant time."""
    raw = request.get_data(cache=True)  # read first: a body past the limit is a 413 before anything else
    presented = request.headers.get("X-Webhook-Hmac", "").strip().lower()
    expected = hmac.new(key.encode(), raw, hashlib.sha512).hexdigest() if key else ""
    return bool(key) and hmac.compare_digest(presented, expected)


def _deliver(company_id: int | None) -> Any:
    body = request.get_json(silent=True)
    if not isinstance(body, dict):
        return error_response(400, "Некорректный запрос")
    for event in gateway.translate(body):
        if company_id is not None:
            event["company_id"] = company_id
        gateway.deliver_event(event)
    return jsonify(success=True)


@bp.post("/whatsapp/events/<id:company_id>")
def company_gateway_events(company_id: int) -> Any:
    """One company's gateway events (Evolution API, WAHA), proven by the company's secret in the URL and,
    when WAHA signs its deliveries and a key is set, by their HMAC as well."""
    request.get_data(cache=True)  # a body past the limit is a 413 before anything else
    key = runtime.settings().waha_webhook_hmac_key
    signature_wrong = "X-Webhook-Hmac" in request.headers and bool(key) and not _hmac_ok(key)
    if not verify_gateway_events_secret(company_id, request.args.get("secret")) or signature_wrong:
        log.warning("rejected a gateway event for company %s with a wrong secret or signature", company_id)
        return error_response(401, "Unauthorized")
    return _deliver(company_id)


@bp.post("/whatsapp/events")
def gateway_events() -> Any:
    """WAHA's events signed with HMAC-SHA512 (``X-Webhook-Hmac``), for sessions named after their company."""
    if not _hmac_ok(runtime.settings().waha_webhook_hmac_key):
        log.warning("rejected a gateway event with a missing or wrong signature")
        return error_response(401, "Unauthorized")
    return _deliver(None)
