"""The YClients API client with the partner token: the marketplace partner API (``/marketplace/...``)
and the salon API calls the service needs (``/api/v1/...``).

What the service uses is wrapped: the activation callback, the installation status of our
application in a salon, a salon's details (time zone, title, address) and a visit's attendance;
``call`` is the one place that speaks HTTP, so payments and uninstall calls can be added beside them.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

import requests

ACCEPT = "application/vnd.yclients.v2+json"
ALREADY_INSTALLED = "уже установил"
EXCERPT_LENGTH = 500
# 4xx answers that mean "try again later" rather than "no".
RETRYABLE_CLIENT_ERRORS = (408, 425, 429)
# ``data.connection_status.status`` of an installation: pending (waiting for our activation), active,
# freezed (frozen for non-payment). Only the first two let the salon use the application.
INSTALLED_STATUSES = ("pending", "active")


class Outcome(StrEnum):
    """What a partner API answer means for the caller."""

    ACCEPTED = "accepted"
    REJECTED = "rejected"
    RETRY = "retry"


@dataclass(frozen=True)
class PartnerResponse:
    """One answer (or failure to answer) of the partner API, classified."""

    outcome: Outcome
    http_status: int | None
    message: str
    excerpt: str = ""
    body: Any = None  # the answer's JSON, when it was JSON


def _message_of(body: Any) -> str | None:
    """YClients puts the human message in ``meta.message`` (v2) or ``message`` / ``errors``."""
    if not isinstance(body, dict):
        return None
    meta = body.get("meta")
    if isinstance(meta, dict) and meta.get("message"):
        return str(meta["message"])
    for field in ("message", "error", "errors"):
        value = body.get(field)
        if value:
            return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
    return None


def classify(status: int, text: str) -> PartnerResponse:
    """Sort an HTTP answer into accepted / rejected / retry (DESIGN.md §6, platform facts)."""
    excerpt = text[:EXCERPT_LENGTH]
    try:
        body = json.loads(text) if text else None
    except ValueError:
        body = None  # HTML instead of JSON, as YClients' 301 and some errors send
    message = _message_of(body) or f"HTTP {status}"
    if 200 <= status < 300 or status == 301:
        outcome = Outcome.ACCEPTED
    elif status == 403 and ALREADY_INSTALLED in message.lower():
        outcome = Outcome.ACCEPTED
    elif status >= 500 or status in RETRYABLE_CLIENT_ERRORS:
        outcome = Outcome.RETRY
    else:
        outcome = Outcome.REJECTED
    return PartnerResponse(outcome, status, message, excerpt, body)


@dataclass(frozen=True)
class CompanyInfo:
    """What YClients tells of a salon; fields are None when it did not say (or could not be asked)."""

    response: PartnerResponse
    title: str | None
    address: str | None
    timezone_name: str | None


@dataclass(frozen=True)
class Installation:
    """What YClients says about our application in one salon (``GET /marketplace/salon/{id}/application/{id}``)."""

    response: PartnerResponse
    status: str | None  # connection_status.status; None when YClients named none (not installed, or no answer)

    @property
    def installed(self) -> bool:
        return self.response.http_status == 200 and self.status in INSTALLED_STATUSES


def _connection_status(body: Any) -> str | None:
    """``data.connection_status.status`` of a v2 answer, if it has one."""
    data = body.get("data") if isinstance(body, dict) else None
    connection = data.get("connection_status") if isinstance(data, dict) else None
    status = connection.get("status") if isinstance(connection, dict) else None
    return status if isinstance(status, str) else None


class YClientsPartnerClient:
    """Calls to the marketplace partner API with the partner token; every call has a timeout."""

    def __init__(self, base_url: str, partner_token: str, timeout: float, session: requests.Session | None = None):
        self.base_url = base_url.rstrip("/")
        self.partner_token = partner_token
        self.timeout = timeout
        self.session = session or requests.Session()

    def request(self, method: str, path: str, payload: dict[str, Any] | None = None) -> PartnerResponse:
        """One call to the marketplace partner API (``/marketplace…``); see ``call``."""
        return self.call(method, f"/marketplace{path}", payload)

    def call(self, method: str, path: str, payload: dict[str, Any] | None = None) -> PartnerResponse:
        """One call to ``path`` under the API base; network failures and timeouts come back as
        ``Outcome.RETRY``, never raised."""
        headers = {
            "Authorization": f"Bearer {self.partner_token}",
            "Accept": ACCEPT,
            "Content-Type": "application/json",
        }
        try:
            response = self.session.request(
                method,
                f"{self.base_url}{path}",
                json=payload,
                headers=headers,
                timeout=self.timeout,
                # The 301 of the callback is meant for a browser; following it yields an HTML page.
                allow_redirects=False,
            )
        except requests.Timeout:
            return PartnerResponse(Outcome.RETRY, None, f"YClients не ответил за {self.timeout:g} с")
        except requests.RequestException as exc:
            return PartnerResponse(Outcome.RETRY, None, f"YClients недоступен: {type(exc).__name__}")
        return classify(response.status_code, response.text)

    def send_callback(
        self, salon_id: int, application_id: int, api_key: str, webhook_urls: list[str]
    ) -> PartnerResponse:
        """Tell YClients the salon's integration is set up (``POST /marketplace/partner/callback``)."""
        payload = {
            "salon_id": salon_id,
            "application_id": application_id,
            "api_key": api_key,
            "webhook_urls": webhook_urls,
        }
        return self.request("POST", "/partner/callback", payload)

    def installation(self, salon_id: int, application_id: int) -> Installation:
        """Whether our application is installed in ``salon_id``, and in which state."""
        response = self.request("GET", f"/salon/{salon_id}/application/{application_id}")
        return Installation(response, _connection_status(response.body))

    def company(self, company_id: int) -> CompanyInfo:
        """A salon's own details (``GET /api/v1/company/{id}``): title, address, time zone."""
        response = self.call("GET", f"/api/v1/company/{company_id}")
        data = response.body.get("data") if isinstance(response.body, dict) else None
        data = data if isinstance(data, dict) and response.outcome is Outcome.ACCEPTED else {}

        def text(name: str) -> str | None:
            value = data.get(name)
            return value.strip() if isinstance(value, str) and value.strip() else None

        return CompanyInfo(response, text("title"), text("address"), text("timezone_name"))

    def set_attendance(self, record_id: int, visit_id: int, attendance: int, comment: str) -> PartnerResponse:
        """Mark a client's visit (2 confirmed, −1 will not come) through ``PUT /api/v1/visits/{visit}/{record}``."""
        body = {"attendance": attendance, "comment": comment}
        return self.call("PUT", f"/api/v1/visits/{visit_id}/{record_id}", body)

