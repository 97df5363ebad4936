"""The WAHA adapter: WhatsApp sessions through WAHA's HTTP API (``X-Api-Key``, timeouts on every call)."""

from __future__ import annotations

from typing import Any

import requests

from integrations.whatsapp.base import GatewayError, QrCode, SessionInfo, WhatsAppGateway


def phone_from_me(me: dict[str, Any] | None) -> str | None:
    """The linked number's digits from WAHA's ``me`` (``{"id": "79001234567@c.us"}``)."""
    if not me or not isinstance(me.get("id"), str):
        return None
    digits = me["id"].split("@", 1)[0].split(":", 1)[0]
    return digits if digits.isdigit() else None


class WahaGateway(WhatsAppGateway):
    """WAHA's REST API; session events arrive separately at our ``/whatsapp/events`` endpoint."""

    def __init__(self, base_url: str, api_key: str | None, timeout: float) -> None:
        self._base = base_url.rstrip("/")
        self._timeout = timeout
        self._http = requests.Session()
        if api_key:
            self._http.headers["X-Api-Key"] = api_key

    def _call(self, method: str, path: str, body: dict[str, Any] | None = None,
              params: dict[str, str] | None = None, allow: tuple[int, ...] = ()) -> requests.Response:
        try:
            response = self._http.request(method, self._base + path, json=body, params=params, timeout=self._timeout)
        except requests.RequestException as exc:
            raise GatewayError(f"WAHA unreachable: {type(exc).__name__}") from None
        if response.status_code >= 400 and response.status_code not in allow:
            raise GatewayError(f"WAHA answered {response.status_code} to {method} {path}", response.status_code)
        return response

    def start(self, session: str, webhook_url: str | None = None, hmac_key: str | None = None) -> None:
        existing = self._call("GET", f"/api/sessions/{session}", allow=(404,))
        if existing.status_code == 404:
            config: dict[str, Any] = {}
            if webhook_url:
                hook: dict[str, Any] = {"url": webhook_url, "events": ["session.status"]}
                if hmac_key:
                    hook["hmac"] = {"key": hmac_key}
                config["webhooks"] = [hook]
            self._call("POST", "/api/sessions", {"name": session, "start": True, "config": config})
            return
        status = existing.json().get("status")
        if status in ("STOPPED", "FAILED"):
            self._call("POST", f"/api/sessions/{session}/restart" if status == "FAILED" else
                       f"/api/sessions/{session}/start")

    def restart(self, session: str) -> None:
        self._call("POST", f"/api/sessions/{session}/restart")

    def qr(self, session: str) -> QrCode | None:
        response = self._call("GET", f"/api/{session}/auth/qr", params={"format": "raw"}, allow=(404, 422))
        if response.status_code >= 400:
            return None
        value = response.json().get("value")
        return QrCode(value) if isinstance(value, str) and value else None

    def request_pairing_code(self, session: str, phone_digits: str) -> str:
        response = self._call("POST", f"/api/{session}/auth/request-code", {"phoneNumber": phone_digits})
        code = response.json().get("code")
        if not isinstance(code, str) or not code:
            raise GatewayError("WAHA returned no pairing code")
        return code

    def info(self, session: str) -> SessionInfo:
        response = self._call("GET", f"/api/sessions/{session}", allow=(404,))
        if response.status_code == 404:
            return SessionInfo("STOPPED")
        body = response.json()
        return SessionInfo(str(body.get("status", "STOPPED")), phone_from_me(body.get("me")))

    def stop(self, session: str) -> None:
        self._call("POST", f"/api/sessions/{session}/stop", allow=(404,))

    def logout(self, session: str) -> None:
        self._call("POST", f"/api/sessions/{session}/logout", allow=(404,))

    def send_text(self, session: str, phone_digits: str, text: str) -> None:
        self._call("POST", "/api/sendText", {"session": session, "chatId": f"{phone_digits}@c.us", "text": text})
