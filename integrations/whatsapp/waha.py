"""The WAHA adapter: WhatsApp sessions through WAHA's HTTP API (``X-Api-Key``, timeouts on every call).

Written from WAHA's source (``src/api/sessions.controller.ts``, ``src/core/manager.core.ts``, release
2024.10) and a running Core server:

- ``GET /api/version`` tells the tier; **Core serves only the session ``default``** (any other name gets 422
  ``OnlyDefaultSessionIsAllowed``), which exists from boot, so its first create answers 422 "already exists";
- create answers 422 for an existing session (then ``PUT`` updates its config and ``start`` starts it);
  ``restart`` of an unknown session is 404 (then it is created again);
- ``logout`` restarts a running session with a fresh login: unlinking for good is ``DELETE``;
- ``session.status`` carries no disconnect code, and older releases send no event ``id``/``timestamp``.
"""

from __future__ import annotations

import threading
import time
from typing import Any

import requests

from integrations.whatsapp.base import (
    GatewayError,
    GatewayInfo,
    QrCode,
    SessionInfo,
    SingleSessionOnly,
    WhatsAppGateway,
)
from integrations.whatsapp.transport import never_connected

CORE_SESSION = "default"
# How long the tier answer is trusted (an operator may swap the image for Plus).
TIER_TTL_SECONDS = 300.0


def phone_from_me(me: dict[str, Any] | None) -> str | None:
    """The linked number's digits from WAHA's ``me`` (``{"id": "79001234567@c.us"}``)."""
    if not me or not isinstance(me.get("id"), str):
        return None
    digits = me["id"].split("@", 1)[0].split(":", 1)[0]
    return digits if digits.isdigit() else None


def message_id(sent: object) -> str | None:
    """WAHA's serialized id of a message it sent: NOWEB answers Baileys' message (``key``), WEBJS an ``id``
    object with ``_serialized``; receipts (``message.ack``) name the message by this form."""
    if not isinstance(sent, dict):
        return None
    found = sent.get("id")
    if isinstance(found, str) and found:
        return found
    if isinstance(found, dict) and isinstance(found.get("_serialized"), str):
        return str(found["_serialized"])
    key = sent.get("key")
    if isinstance(key, dict) and isinstance(key.get("id"), str) and isinstance(key.get("remoteJid"), str):
        chat = key["remoteJid"].replace("@s.whatsapp.net", "@c.us")
        return f"{'true' if key.get('fromMe') else 'false'}_{chat}_{key['id']}"
    return None


class WahaGateway(WhatsAppGateway):
    """WAHA's REST API; session events arrive separately at our per-company ``/whatsapp/events/<id>``."""

    def __init__(self, base_url: str, api_key: str | None, timeout: float) -> None:
        self._base = base_url.rstrip("/")
        self._timeout = timeout
        self._http = requests.Session()
        if api_key:
            self._http.headers["X-Api-Key"] = api_key
        self._tier: tuple[float, GatewayInfo] | None = None
        self._tier_lock = threading.Lock()

    def _call(self, method: str, path: str, body: dict[str, Any] | None = None,
              params: dict[str, str] | None = None, allow: tuple[int, ...] = ()) -> requests.Response:
        try:
            response = self._http.request(method, self._base + path, json=body, params=params, timeout=self._timeout)
        except requests.RequestException as exc:
            raise GatewayError(f"WAHA unreachable: {type(exc).__name__}", never_sent=never_connected(exc)) from None
        if response.status_code == 422 and "only 'default' session" in response.text:
            raise SingleSessionOnly("WAHA Core serves only the session 'default' (WAHA Plus serves several)", 422)
        if response.status_code >= 400 and response.status_code not in allow:
            raise GatewayError(f"WAHA answered {response.status_code} to {method} {path}: {response.text[:200]}",
                               response.status_code)
        return response

    def describe(self) -> GatewayInfo:
        with self._tier_lock:
            if self._tier and time.monotonic() - self._tier[0] < TIER_TTL_SECONDS:
                return self._tier[1]
            body = self._call("GET", "/api/version").json()
            tier = str(body.get("tier") or "CORE").upper()
            info = GatewayInfo(kind="waha", version=body.get("version"), tier=tier,
                               only_session=CORE_SESSION if tier == "CORE" else None)
            self._tier = (time.monotonic(), info)
            return info

    @staticmethod
    def _config(webhook_url: str | None, hmac_key: str | None) -> dict[str, Any]:
        if not webhook_url:
            return {}
        hook: dict[str, Any] = {"url": webhook_url, "events": ["session.status", "message", "message.ack"]}
        if hmac_key:
            hook["hmac"] = {"key": hmac_key}
        return {"webhooks": [hook]}

    def start(self, session: str, webhook_url: str | None = None, hmac_key: str | None = None) -> None:
        config = self._config(webhook_url, hmac_key)
        created = self._call("POST", "/api/sessions", {"name": session, "start": True, "config": config},
                             allow=(422,))
        if created.status_code != 422:
            return
        if "already exists" not in created.text:
            raise GatewayError(f"WAHA refused to create {session}: {created.text[:200]}", 422)
        # An existing session (Core's `default` always exists): new config (restarts it when running), then start.
        self._call("PUT", f"/api/sessions/{session}", {"config": config})
        started = self._call("POST", f"/api/sessions/{session}/start", allow=(422,))
        if started.status_code == 422 and "already started" not in started.text:
            raise GatewayError(f"WAHA refused to start {session}: {started.text[:200]}", 422)

    def restart(self, session: str, webhook_url: str | None = None, hmac_key: str | None = None) -> None:
        response = self._call("POST", f"/api/sessions/{session}/restart", allow=(404,))
        if response.status_code == 404:
            self.start(session, webhook_url, hmac_key)

    def qr(self, session: str) -> QrCode | None:
        response = self._call("GET", f"/api/{session}/auth/qr", params={"format": "raw"}, allow=(404, 422))
        if response.status_code >= 400:
            return None
        value = response.json().get("value")
        return QrCode(value) if isinstance(value, str) and value else None

    def request_pairing_code(self, session: str, phone_digits: str) -> str:
        # WAHA holds this request forever while the session is STARTING: the call's timeout ends it.
        response = self._call("POST", f"/api/{session}/auth/request-code", {"phoneNumber": phone_digits})
        code = response.json().get("code")
        if not isinstance(code, str) or not code:
            raise GatewayError("WAHA returned no pairing code")
        return code

    def info(self, session: str) -> SessionInfo:
        response = self._call("GET", f"/api/sessions/{session}", allow=(404,))
        if response.status_code == 404:
            return SessionInfo("STOPPED", exists=False)
        body = response.json()
        return SessionInfo(str(body.get("status", "STOPPED")), phone_from_me(body.get("me")))

    def stop(self, session: str) -> None:
        self._call("POST", f"/api/sessions/{session}/stop", allow=(404,))

    def logout(self, session: str) -> None:
        # DELETE stops, logs out and forgets (idempotent); POST …/logout would start a new login.
        self._call("DELETE", f"/api/sessions/{session}", allow=(404,))

    def send_text(self, session: str, phone_digits: str, text: str) -> str:
        sent = self._call("POST", "/api/sendText", {"session": session, "chatId": f"{phone_digits}@c.us", "text": text})
        found = message_id(sent.json())
        if found is None:
            raise GatewayError("WAHA returned no message id")
        return found

    def typing(self, session: str, phone_digits: str, seconds: float) -> None:
        # WhatsApp shows "typing…" until our next message (or about 25 s): the caller sends after ``seconds``,
        # so no worker waits here.
        self._call("POST", "/api/startTyping", {"session": session, "chatId": f"{phone_digits}@c.us"})

    def number_exists(self, session: str, phone_digits: str) -> bool:
        answer = self._call("GET", "/api/contacts/check-exists", params={"phone": phone_digits, "session": session})
        return answer.json().get("numberExists") is True
