"""A local HTTP server that behaves as Evolution API v2 does, written from its source (2.3.x:
``instance.controller.ts``, ``instance.guard.ts``, ``whatsapp.baileys.service.ts``, ``webhook.controller.ts``).

- header ``apikey`` (the global key; a wrong one is 401 ``{"status", "error", "response": {"message"}}``);
- ``POST /instance/create`` (201) with a name in use is 403; an unknown instance on any other route is 404;
- ``/instance/connect`` answers ``{"pairingCode", "code", "base64", "count"}`` while connecting, ``{"count": 0}``
  before the first QR, and its errors as HTTP 200 ``{"error": true, "message"}`` (as does ``restart``);
  a ``close`` instance starts connecting again; a pairing code exists only for a number given at create;
- webhooks: subscribed with UPPER_SNAKE names, delivered with dotted lowercase ``event`` in the envelope
  ``{"event", "instance", "data", "destination", "date_time", "sender", "server_url", "apikey"}``, unsigned;
- ``connection.update`` ``close`` only for 401/402/403/406; other drops reconnect silently (``connecting``);
  ``QRCODE_LIMIT`` codes, then "QR code limit reached" and ``refused`` (statusReason 428).
"""

from __future__ import annotations

import base64
import os
import time
import uuid
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from typing import Any
from urllib.parse import parse_qs, urlsplit

from tests.fakes.local_http import FakeGatewayServer

API_KEY = "test-evolution-api-key"
TERMINAL = (401, 402, 403, 406)
STATUSES = {-1: "ERROR", 0: "PENDING", 1: "SERVER_ACK", 2: "DELIVERY_ACK", 3: "READ", 4: "PLAYED"}


@dataclass
class FakeInstance:
    name: str
    webhook: dict[str, Any]
    token: str = field(default_factory=lambda: str(uuid.uuid4()).upper())
    instance_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    state: str = "close"
    number: str | None = None
    qr: dict[str, Any] = field(default_factory=lambda: {"count": 0})
    owner: str | None = None  # credentials: the linked number's jid
    reason_code: int | None = None


class FakeEvolution(FakeGatewayServer):
    """The server; ``url`` is what ``EVOLUTION_URL`` should be set to."""

    def __init__(self, qr_limit: int = 30) -> None:
        super().__init__()
        self.qr_limit = qr_limit
        self.instances: dict[str, FakeInstance] = {}
        self.presence: list[dict[str, Any]] = []

    # --- what WhatsApp and the phone do ------------------------------------------------------

    def new_qr(self, name: str) -> None:
        """Baileys produced a QR: ``qrcode.updated``, or the limit's message and ``refused``."""
        instance = self.instances[name]
        if instance.qr["count"] >= self.qr_limit:
            self._send(instance, "qrcode.updated", {"message": "QR code limit reached, please login again",
                                                     "statusCode": 500})
            instance.state = "close"
            self._send(instance, "connection.update", {"instance": name, "state": "refused", "statusReason": 428})
            return
        code = "2@" + ",".join(base64.b64encode(os.urandom(n)).decode() for n in (48, 32, 32, 32))
        pairing = "WZYX5R7K" if instance.number else None
        instance.qr = {"pairingCode": pairing, "code": code, "base64": "data:image/png;base64,iVBORw0KGgo=",
                       "count": instance.qr["count"] + 1}
        self._send(instance, "qrcode.updated", {"qrcode": {"instance": name, "pairingCode": pairing, "code": code,
                                                           "base64": instance.qr["base64"]}})

    def scan(self, name: str, phone: str) -> None:
        """The phone scanned: Baileys' 515 restart is silent here (a ``connecting``), then ``open``."""
        instance = self.instances[name]
        instance.owner, instance.qr = f"{phone}@s.whatsapp.net", {"count": 0}
        self._send(instance, "connection.update", {"instance": name, "state": "connecting", "statusReason": 200})
        self._open(instance)

    def drop(self, name: str, code: int) -> None:
        """WhatsApp closes the connection with ``code``: terminal codes are reported, others reconnect."""
        instance = self.instances[name]
        if code in TERMINAL:
            instance.state, instance.reason_code = "close", code
            if code in (401, 403, 406):
                instance.owner = None
            self._send(instance, "connection.update", {"instance": name, "state": "close", "statusReason": code})
            return
        instance.state = "connecting"
        self._send(instance, "connection.update", {"instance": name, "state": "connecting", "statusReason": 200})
        if instance.owner:
            self._open(instance)

    def incoming(self, name: str, from_digits: str, text: str) -> str:
        """A client writes to the linked number: ``messages.upsert``."""
        key = {"remoteJid": f"{from_digits}@s.whatsapp.net", "fromMe": False, "id": uuid.uuid4().hex[:20].upper()}
        self._send(self.instances[name], "messages.upsert", {
            "key": key, "pushName": "Клиент", "status": "DELIVERY_ACK", "message": {"conversation": text},
            "messageType": "conversation", "messageTimestamp": int(time.time()), "source": "android"})
        return str(key["id"])

    def ack(self, name: str, message_id: str, ack: int) -> None:
        """A receipt for a message we sent: ``messages.update``."""
        sent = next(m for m in self.sent_text if m["id"] == message_id)
        self._send(self.instances[name], "messages.update", {
            "keyId": message_id, "remoteJid": f"{sent['number']}@s.whatsapp.net", "fromMe": True,
            "participant": None, "status": STATUSES[ack], "instanceId": self.instances[name].instance_id})

    def _open(self, instance: FakeInstance) -> None:
        instance.state, instance.reason_code = "open", None
        self._send(instance, "connection.update", {"instance": instance.name, "wuid": instance.owner,
                                                    "profileName": "Салон", "state": "open", "statusReason": 200})

    # --- webhooks ------------------------------------------------------------------------------

    def _send(self, instance: FakeInstance, event: str, data: dict[str, Any]) -> None:
        hook = instance.webhook
        we = event.replace(".", "_").upper()
        if not hook.get("enabled") or we not in hook.get("events", []) or not hook.get("url"):
            return
        url = hook["url"] + ("/" + event.replace(".", "-") if hook.get("byEvents") else "")
        body = {"event": event, "instance": instance.name, "data": data, "destination": hook["url"],
                "date_time": time.strftime("%Y-%m-%dT%H:%M:%S.000Z"), "sender": instance.owner,
                "server_url": self.url, "apikey": instance.token}
        headers = {"Content-Type": "application/json", **(hook.get("headers") or {})}
        self.post_event(url, body, headers)

    # --- the HTTP API --------------------------------------------------------------------------

    def _handle(self, handler: BaseHTTPRequestHandler, method: str) -> None:
        url = urlsplit(handler.path)
        body = self.read_json(handler)
        self.calls.append((method, url.path))
        parts = url.path.strip("/").split("/")
        query = {k: v[0] for k, v in parse_qs(url.query).items()}
        if parts == [""]:
            welcome = "Welcome to the Evolution API, it is working!"
            return self.reply_json(handler, 200, {"status": 200, "message": welcome, "version": "2.3.6"})
        if handler.headers.get("apikey") != API_KEY:
            return self.reply_json(handler, 401, {"status": 401, "error": "Unauthorized",
                                                  "response": {"message": "Unauthorized"}})
        with self._lock:
            status, answer, after = self._route(method, parts, body, query)
        self.reply_json(handler, status, answer)
        if after is not None:
            after()

    @staticmethod
    def _error(status: int, error: str, message: str) -> tuple[int, Any, Any]:
        return status, {"status": status, "error": error, "response": {"message": [message]}}, None

    def _connect(self, instance: FakeInstance) -> Any:
        instance.state, instance.qr = "connecting", {"count": 0}

        def go() -> None:
            self._send(instance, "connection.update", {"instance": instance.name, "state": "connecting",
                                                        "statusReason": 200})
            if instance.owner:
                self._open(instance)
            else:
                self.new_qr(instance.name)
        return go

    def _route(self, method: str, parts: list[str], body: dict[str, Any],
               query: dict[str, str]) -> tuple[int, Any, Any]:
        if parts == ["instance", "create"] and method == "POST":
            return self._create(body)
        if parts == ["instance", "fetchInstances"]:
            rows = [self._row(i) for i in self.instances.values()
                    if not query.get("instanceName") or i.name == query["instanceName"]]
            return 200, rows, None
        if len(parts) != 3:
            return self._error(404, "Not Found", f"Cannot {method} /{'/'.join(parts)}")
        group, action, name = parts
        instance = self.instances.get(name)
        if instance is None:
            return self._error(404, "Not Found", f'The "{name}" instance does not exist')
        if group == "instance":
            return self._instance(method, action, instance)
        if group == "webhook" and action == "set":
            hook = dict(body.get("webhook") or {})
            if not hook.get("enabled"):
                hook["events"] = []
            instance.webhook = hook
            return 201, {"webhook": hook}, None
        if group == "webhook" and action == "find":
            return 200, instance.webhook, None
        return self._messaging(group, action, instance, body)

    def _create(self, body: dict[str, Any]) -> tuple[int, Any, Any]:
        name = body.get("instanceName")
        if name in self.instances:
            return self._error(403, "Forbidden", f'This name "{name}" is already in use.')
        hook = dict(body.get("webhook") or {})
        if not isinstance(hook.get("events", []), list):
            return self._error(400, "Bad Request", "webhook.events must be an array")
        hook.setdefault("enabled", True)
        instance = self.instances[name] = FakeInstance(name, hook, number=body.get("number"))
        after = self._connect(instance) if body.get("qrcode") else None
        if after is not None:
            after()  # Evolution connects and waits for the first QR before it answers
        return 201, {"instance": {"instanceName": name, "instanceId": instance.instance_id,
                                  "integration": body.get("integration"), "status": instance.state},
                     "hash": instance.token, "qrcode": dict(instance.qr) if body.get("qrcode") else None}, None

    def _row(self, instance: FakeInstance) -> dict[str, Any]:
        return {"id": instance.instance_id, "name": instance.name, "connectionStatus": instance.state,
                "ownerJid": instance.owner, "profileName": "Салон" if instance.owner else None,
                "integration": "WHATSAPP-BAILEYS", "number": instance.number, "token": instance.token,
                "disconnectionReasonCode": instance.reason_code}

    def _instance(self, method: str, action: str, instance: FakeInstance) -> tuple[int, Any, Any]:
        if action == "connect" and method == "GET":
            if instance.state == "open":
                return 200, {"instance": {"instanceName": instance.name, "state": "open"}}, None
            if instance.state == "connecting":
                return 200, dict(instance.qr), None
            return 200, {"count": 0}, self._connect(instance)
        if action == "connectionState":
            return 200, {"instance": {"instanceName": instance.name, "state": instance.state}}, None
        if action == "restart" and method == "POST":
            if instance.state == "close":
                return 200, {"error": True, "message": f'BadRequestException: The "{instance.name}" instance is '
                                                       "not connected"}, None
            return 200, {"count": 0}, self._connect(instance)
        if action == "logout" and method == "DELETE":
            if instance.state == "close":
                return self._error(400, "Bad Request", f'The "{instance.name}" instance is not connected')
            instance.owner, instance.state = None, "close"
            return 200, {"status": "SUCCESS", "error": False, "response": {"message": "Instance logged out"}}, None
        if action == "delete" and method == "DELETE":
            del self.instances[instance.name]
            return 200, {"status": "SUCCESS", "error": False, "response": {"message": "Instance deleted"}}, None
        return self._error(404, "Not Found", f"Cannot {method} /instance/{action}/{instance.name}")

    def _messaging(self, group: str, action: str, instance: FakeInstance,
                   body: dict[str, Any]) -> tuple[int, Any, Any]:
        if instance.state != "open":
            return self._error(400, "Bad Request", "Connection Closed")
        if (group, action) == ("message", "sendText"):
            number = str(body.get("number", ""))
            if number in self.not_on_whatsapp:
                return 400, {"status": 400, "error": "Bad Request",
                             "response": {"message": [{"jid": f"{number}@s.whatsapp.net", "exists": False,
                                                       "number": number}]}}, None
            key = {"remoteJid": f"{number}@s.whatsapp.net", "fromMe": True, "id": uuid.uuid4().hex[:20].upper()}
            self.sent_text.append({**body, "id": key["id"]})
            return 201, {"key": key, "message": {"conversation": body.get("text")},
                         "messageTimestamp": int(time.time()), "status": "PENDING"}, None
        if (group, action) == ("chat", "sendPresence"):
            if not {"number", "presence", "delay"} <= set(body):
                return self._error(400, "Bad Request", "number, presence and delay are required")
            self.presence.append(body)
            time.sleep(min(int(body["delay"]), 5000) / 1000)
            return 201, {"presence": body["presence"]}, None
        if (group, action) == ("chat", "whatsappNumbers"):
            return 200, [{"jid": f"{n}@s.whatsapp.net", "exists": n not in self.not_on_whatsapp, "number": n}
                         for n in body.get("numbers", [])], None
        return self._error(404, "Not Found", f"Cannot POST /{group}/{action}/{instance.name}")
