"""The Evolution API v2 adapter: one Baileys instance per company (header ``apikey``, timeouts on every call).

Written from Evolution API's source (2.3.x: ``instance.controller.ts``, ``whatsapp.baileys.service.ts``,
``webhook.controller.ts``). What it does differently from WAHA, and how the adapter copes:

- errors of ``/instance/connect`` and ``/instance/restart`` come as HTTP 200 ``{"error": true, "message"}``;
  the others as ``{"status", "error", "response": {"message": [...]}}`` with a 4xx status;
- ``{"count": 0}`` from ``/instance/connect`` means "no QR yet";
- a pairing code is produced only for a number given when the connection starts, so asking for one
  creates the instance again with that number;
- Evolution does not sign its webhooks: the URL carries the company's secret (the caller's ``webhook_url``);
- ``connection.update`` is ``close`` only for 401/402/403/406 (others reconnect silently, as ``connecting``);
  ``refused`` ends a login attempt after the gateway's QR limit.
"""

from __future__ import annotations

import time
from typing import Any

import requests

from integrations.whatsapp.base import GatewayError, GatewayEvent, GatewayInfo, QrCode, SessionInfo, WhatsAppGateway
from integrations.whatsapp.transport import never_connected

INTEGRATION = "WHATSAPP-BAILEYS"
# Subscribed by their UPPER_SNAKE names; deliveries name them dotted lowercase.
SUBSCRIBED = ["QRCODE_UPDATED", "CONNECTION_UPDATE", "MESSAGES_UPSERT", "MESSAGES_UPDATE"]
# Evolution's message statuses as WAHA's ack numbers (the internal format's).
ACKS = {"ERROR": -1, "PENDING": 0, "SERVER_ACK": 1, "DELIVERY_ACK": 2, "READ": 3, "PLAYED": 4}
ACK_NAMES = {-1: "ERROR", 0: "PENDING", 1: "SERVER", 2: "DEVICE", 3: "READ", 4: "PLAYED"}
# Baileys reports "no reason" as 200.
NO_REASON = 200


def jid_digits(jid: object) -> str | None:
    """The phone digits of a personal WhatsApp id (``79001234567@s.whatsapp.net`` or ``…:12@…``)."""
    if not isinstance(jid, str) or not jid.endswith(("@s.whatsapp.net", "@c.us")):
        return None
    digits = jid.split("@", 1)[0].split(":", 1)[0]
    return digits if digits.isdigit() else None


def _chat_id(jid: str) -> str:
    """WAHA's form of a chat id: ``<digits>@c.us`` for people, anything else (``@lid``, ``@g.us``) as given."""
    digits = jid_digits(jid)
    return f"{digits}@c.us" if digits else jid


def _text_of(message: object) -> str:
    if not isinstance(message, dict):
        return ""
    for value in (message.get("conversation"), (message.get("extendedTextMessage") or {}).get("text")):
        if isinstance(value, str):
            return value
    return ""


class EvolutionGateway(WhatsAppGateway):
    """Evolution API v2's REST API; its webhooks arrive at our per-company ``/whatsapp/events/<id>``."""

    def __init__(self, base_url: str, api_key: str, timeout: float) -> None:
        self._base = base_url.rstrip("/")
        self._timeout = timeout
        self._http = requests.Session()
        self._http.headers["apikey"] = api_key

    def _call(self, method: str, path: str, body: dict[str, Any] | None = None,
              params: dict[str, str] | None = None, allow: tuple[int, ...] = (),
              timeout: float | None = None) -> requests.Response:
        try:
            response = self._http.request(method, self._base + path, json=body, params=params,
                                          timeout=timeout or self._timeout)
        except requests.RequestException as exc:
            raise GatewayError(f"Evolution API unreachable: {type(exc).__name__}",
                               never_sent=never_connected(exc)) from None
        if response.status_code >= 400 and response.status_code not in allow:
            raise GatewayError(f"Evolution API answered {response.status_code} to {method} {path}: "
                               f"{_message(response)}", response.status_code)
        return response

    @staticmethod
    def _body(response: requests.Response) -> Any:
        try:
            body = response.json()
        except ValueError:
            raise GatewayError(f"Evolution API answered {response.status_code} without JSON") from None
        if isinstance(body, dict) and body.get("error") is True:
            raise GatewayError(f"Evolution API refused: {str(body.get('message'))[:200]}", 400)
        return body

    def describe(self) -> GatewayInfo:
        body = self._body(self._call("GET", "/"))
        return GatewayInfo(kind="evolution", version=str(body.get("version")) if isinstance(body, dict) else None)

    # --- sessions --------------------------------------------------------------------------------

    def _webhook(self, url: str | None) -> dict[str, Any]:
        return {"enabled": bool(url), "url": url or "", "byEvents": False, "base64": False, "headers": {},
                "events": SUBSCRIBED if url else []}

    def _create(self, session: str, webhook_url: str | None, number: str | None = None) -> dict[str, Any]:
        body: dict[str, Any] = {"instanceName": session, "integration": INTEGRATION, "qrcode": True,
                                "webhook": self._webhook(webhook_url)}
        if number:
            body["number"] = number
        # Evolution waits about five seconds for the first QR before answering a create.
        response = self._call("POST", "/instance/create", body, allow=(403,), timeout=self._timeout + 10)
        if response.status_code == 403:  # "This name … is already in use."
            return {}
        answer = self._body(response)
        return answer if isinstance(answer, dict) else {}

    def start(self, session: str, webhook_url: str | None = None, hmac_key: str | None = None) -> None:
        if self._create(session, webhook_url):
            return
        # The instance exists: point its webhook at us again and (re)open the connection.
        self._body(self._call("POST", f"/webhook/set/{session}", {"webhook": self._webhook(webhook_url)}))
        state = self._state(session)
        if state == "open":
            # Linked already (a stop here only silenced the webhook): reconnect, so the state is reported.
            self._body(self._call("POST", f"/instance/restart/{session}"))
        elif state in ("close", "refused", None):
            self._body(self._call("GET", f"/instance/connect/{session}"))

    def restart(self, session: str, webhook_url: str | None = None, hmac_key: str | None = None) -> None:
        response = self._call("POST", f"/instance/restart/{session}", allow=(404,))
        if response.status_code == 404:
            self.start(session, webhook_url, hmac_key)
            return
        try:
            self._body(response)
        except GatewayError:
            # "instance is not connected" (closed): connecting again is how Evolution restarts it.
            self._body(self._call("GET", f"/instance/connect/{session}"))

    def _state(self, session: str) -> str | None:
        response = self._call("GET", f"/instance/connectionState/{session}", allow=(404,))
        if response.status_code == 404:
            return None
        state = (self._body(response).get("instance") or {}).get("state")
        return state if isinstance(state, str) else None

    def qr(self, session: str) -> QrCode | None:
        response = self._call("GET", f"/instance/connect/{session}", allow=(404,))
        if response.status_code == 404:
            return None
        body = self._body(response)
        code = body.get("code") if isinstance(body, dict) else None
        return QrCode(code) if isinstance(code, str) and code else None

    def request_pairing_code(self, session: str, phone_digits: str) -> str:
        # Evolution asks WhatsApp for a code only for the number a connection starts with.
        webhook = self._webhook_url(session)
        self._call("DELETE", f"/instance/delete/{session}", allow=(400, 404))
        created = self._create(session, webhook, number=phone_digits)
        code = (created.get("qrcode") or {}).get("pairingCode")
        deadline = time.monotonic() + self._timeout
        while not code and time.monotonic() < deadline:
            body = self._body(self._call("GET", f"/instance/connect/{session}"))
            code = body.get("pairingCode") if isinstance(body, dict) else None
            if not code:
                time.sleep(0.5)
        if not isinstance(code, str) or not code:
            raise GatewayError("Evolution API returned no pairing code")
        return code

    def _webhook_url(self, session: str) -> str | None:
        response = self._call("GET", f"/webhook/find/{session}", allow=(404,))
        if response.status_code == 404:
            return None
        body = self._body(response)
        url = body.get("url") if isinstance(body, dict) else None
        return url if isinstance(url, str) and url else None

    def info(self, session: str) -> SessionInfo:
        response = self._call("GET", "/instance/fetchInstances", params={"instanceName": session}, allow=(404,))
        rows = self._body(response) if response.status_code != 404 else []
        row = next((r for r in rows if isinstance(r, dict) and r.get("name") == session), None) \
            if isinstance(rows, list) else None
        if row is None:
            return SessionInfo("STOPPED", exists=False)
        state, code = row.get("connectionStatus"), row.get("disconnectionReasonCode")
        code = code if isinstance(code, int) else None
        if state == "open":
            return SessionInfo("WORKING", jid_digits(row.get("ownerJid")))
        if state == "connecting":
            return SessionInfo("SCAN_QR_CODE" if self.qr(session) else "STARTING")
        if state == "refused":
            return SessionInfo("FAILED", code=code)
        return SessionInfo("FAILED" if code in (401, 402, 403, 406) else "STOPPED", code=code)

    def stop(self, session: str) -> None:
        # Evolution cannot hold a session offline with its credentials: it stays linked at the gateway
        # but tells us nothing until started again (start points the webhook back at us).
        response = self._call("POST", f"/webhook/set/{session}", {"webhook": self._webhook(None)}, allow=(404,))
        if response.status_code != 404:
            self._body(response)

    def end_attempt(self, session: str) -> None:
        self._call("DELETE", f"/instance/delete/{session}", allow=(400, 404))

    def logout(self, session: str) -> None:
        # delete logs out a connected or connecting instance first, then forgets it.
        self._call("DELETE", f"/instance/delete/{session}", allow=(400, 404))

    # --- messages --------------------------------------------------------------------------------

    def send_text(self, session: str, phone_digits: str, text: str) -> str:
        body = self._body(self._call("POST", f"/message/sendText/{session}", {"number": phone_digits, "text": text}))
        message_id = (body.get("key") or {}).get("id") if isinstance(body, dict) else None
        if not isinstance(message_id, str) or not message_id:
            raise GatewayError("Evolution API returned no message id")
        return message_id

    def typing(self, session: str, phone_digits: str, seconds: float) -> None:
        # sendPresence blocks for ``delay`` milliseconds, then sends "paused".
        self._body(self._call("POST", f"/chat/sendPresence/{session}",
                              {"number": phone_digits, "presence": "composing", "delay": int(seconds * 1000)},
                              timeout=self._timeout + seconds))

    def number_exists(self, session: str, phone_digits: str) -> bool:
        rows = self._body(self._call("POST", f"/chat/whatsappNumbers/{session}", {"numbers": [phone_digits]}))
        if not isinstance(rows, list) or not rows or not isinstance(rows[0], dict):
            raise GatewayError("Evolution API gave no answer for the number")
        return rows[0].get("exists") is True

    # --- events ----------------------------------------------------------------------------------

    def translate(self, body: dict[str, Any]) -> list[GatewayEvent]:
        return translate_event(body)


def translate_event(body: dict[str, Any]) -> list[GatewayEvent]:
    """One Evolution webhook delivery as internal (WAHA-shaped) events; nothing for what the service ignores."""
    session, data, name = body.get("instance"), body.get("data"), body.get("event")
    if not isinstance(session, str) or not isinstance(data, dict) or not isinstance(name, str):
        return []
    name = name.replace("_", ".").lower()  # "QRCODE_UPDATED" when a global webhook sends it so
    if name == "qrcode.updated":
        if isinstance(data.get("qrcode"), dict):
            return [_status(session, "SCAN_QR_CODE")]
        return []  # "QR code limit reached": the ``refused`` connection.update that follows ends the attempt
    if name == "connection.update":
        return _connection(session, data)
    if name == "messages.upsert":
        return _incoming(session, data)
    if name == "messages.update":
        return _receipt(session, data)
    return []


def _status(session: str, status: str, me: dict[str, Any] | None = None, **payload: Any) -> GatewayEvent:
    return {"event": "session.status", "session": session, "me": me, "payload": {"status": status, **payload}}


def _connection(session: str, data: dict[str, Any]) -> list[GatewayEvent]:
    state, reason = data.get("state"), data.get("statusReason")
    code = reason if isinstance(reason, int) and reason != NO_REASON else None
    if state == "open":
        digits = jid_digits(data.get("wuid"))
        me = {"id": f"{digits}@c.us", "pushName": data.get("profileName")} if digits else None
        return [_status(session, "WORKING", me)]
    if state == "connecting":
        return [_status(session, "STARTING")]
    if state == "refused":
        return [_status(session, "FAILED", reason="qr_timeout")]
    if state == "close":
        return [_status(session, "FAILED", code=code) if code else _status(session, "FAILED")]
    return []


def _incoming(session: str, data: dict[str, Any]) -> list[GatewayEvent]:
    key = data.get("key")
    if not isinstance(key, dict) or key.get("fromMe") is not False or not isinstance(key.get("id"), str):
        return []  # our own messages (sent here or from the phone) are not replies
    remote = key.get("remoteJid")
    if not isinstance(remote, str):
        return []
    stamp = data.get("messageTimestamp")
    payload = {"id": key["id"], "from": _chat_id(remote), "fromMe": False, "body": _text_of(data.get("message")),
               "timestamp": stamp if isinstance(stamp, int) else None, "pushName": data.get("pushName")}
    return [{"event": "message", "session": session, "payload": payload}]


def _receipt(session: str, data: dict[str, Any]) -> list[GatewayEvent]:
    ack = ACKS.get(str(data.get("status")))
    message_id = data.get("keyId")
    if ack is None or data.get("fromMe") is not True or not isinstance(message_id, str):
        return []  # receipts of messages sent to us, deletions and edits are not ours to track
    remote = data.get("remoteJid")
    payload = {"id": message_id, "to": _chat_id(remote) if isinstance(remote, str) else None, "fromMe": True,
               "ack": ack, "ackName": ACK_NAMES[ack]}
    return [{"event": "message.ack", "session": session, "payload": payload}]


def _message(response: requests.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return response.text[:200]
    if isinstance(body, dict) and isinstance(body.get("response"), dict):
        return str(body["response"].get("message"))[:200]
    return str(body)[:200]
