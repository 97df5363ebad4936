"""A local HTTP server that behaves as WAHA does, written from its source (``src/api/sessions.controller.ts``,
``src/core/manager.core.ts``, ``src/core/webhooks.core.ts``, release 2024.10) and a running Core server.

- ``tier="CORE"``: only the session ``default``, which exists from boot (STOPPED, no config); any other
  name gets 422 ``OnlyDefaultSessionIsAllowed`` on create/start and 404 on GET. ``tier="PLUS"``: any name.
- create of an existing session is 422 "already exists. Use PUT to update it."; ``PUT`` stops, updates the
  config and starts again what was running; ``start`` of a started session is 422; ``stop`` is idempotent;
  ``restart``/``logout``/``PUT`` of an unknown session are 404.
- ``logout`` forgets the credentials and **restarts a running session** (new QR codes); ``DELETE`` stops,
  logs out and forgets the session (idempotent).
- ``session.status`` events carry ``{"name", "status"}`` and never a disconnect code; ``newer=True`` adds
  the newer releases' event ``id``/``timestamp`` and the ``X-Webhook-Hmac`` signature when a key is set,
  ``newer=False`` sends neither (as Core 2024.10 does).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import time
import uuid
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from typing import Any
from urllib.parse import parse_qs, urlsplit

from tests.fakes.local_http import FakeGatewayServer

API_KEY = "test-waha-api-key"
ONLY_DEFAULT = ("WAHA Core support only 'default' session. If you want to run more then one WhatsApp account - "
                "please get WAHA PLUS version. Check this out: https://waha.devlike.pro/docs/how-to/plus-version/")


@dataclass
class FakeSession:
    name: str
    config: dict[str, Any] | None = None
    status: str = "STOPPED"
    qr: str | None = None
    phone: str | None = None  # the linked number's credentials, kept across stop/start
    pairing: list[str] = field(default_factory=list)

    @property
    def webhooks(self) -> list[dict[str, Any]]:
        return list((self.config or {}).get("webhooks") or [])


class FakeWaha(FakeGatewayServer):
    """The server; ``url`` is what ``WAHA_URL`` should be set to. Requests without the key get 401."""

    def __init__(self, tier: str = "PLUS", newer: bool = True) -> None:
        super().__init__()
        self.tier, self.newer = tier, newer
        self.sessions: dict[str, FakeSession] = {}
        if tier == "CORE":
            self.sessions["default"] = FakeSession("default")
        self.typing: list[tuple[str, str]] = []

    # --- what WhatsApp and the phone do ------------------------------------------------------

    def new_qr(self, name: str) -> None:
        """WhatsApp rotated the QR: WAHA sends one SCAN_QR_CODE event per rotation."""
        session = self.sessions[name]
        keys = [base64.b64encode(os.urandom(n)).decode() for n in (48, 32, 32, 32)]
        session.status, session.qr = "SCAN_QR_CODE", "2@" + ",".join(keys)
        self._emit_status(session)

    def scan(self, name: str, phone: str) -> None:
        """The phone scanned: WAHA reconnects by itself and reports WORKING with ``me``."""
        session = self.sessions[name]
        session.phone, session.qr = phone, None
        session.status = "WORKING"
        self._emit_status(session)

    def fail(self, name: str) -> None:
        """The engine lost the connection: FAILED, with no code and no reason (as WAHA reports it)."""
        session = self.sessions[name]
        session.status = "FAILED"
        self._emit_status(session)

    def recover(self, name: str) -> None:
        """WAHA restarted a FAILED session by itself with its saved credentials."""
        session = self.sessions[name]
        session.status = "WORKING" if session.phone else "SCAN_QR_CODE"
        self._emit_status(session)

    def incoming(self, name: str, from_digits: str, text: str) -> str:
        """A client writes to the linked number: a ``message`` event."""
        message_id = f"false_{from_digits}@c.us_{uuid.uuid4().hex[:20].upper()}"
        payload = {"id": message_id, "timestamp": int(time.time()), "from": f"{from_digits}@c.us", "fromMe": False,
                   "to": f"{self.sessions[name].phone}@c.us", "body": text, "hasMedia": False}
        self._emit(self.sessions[name], "message", payload)
        return message_id

    def ack(self, name: str, message_id: str, ack: int) -> None:
        """A receipt for a message we sent: ``message.ack`` (1 SERVER, 2 DEVICE, 3 READ, -1 ERROR)."""
        names = {-1: "ERROR", 0: "PENDING", 1: "SERVER", 2: "DEVICE", 3: "READ", 4: "PLAYED"}
        sent = next(m for m in self.sent_text if m["id"] == message_id)
        payload = {"id": message_id, "from": sent["chatId"], "to": sent["chatId"], "fromMe": True, "ack": ack,
                   "ackName": names[ack]}
        self._emit(self.sessions[name], "message.ack", payload)

    # --- events ------------------------------------------------------------------------------

    def _emit_status(self, session: FakeSession) -> None:
        payload: dict[str, Any] = {"name": session.name, "status": session.status}
        if self.newer:
            payload["statuses"] = [{"status": session.status, "timestamp": int(time.time() * 1000)}]
        self._emit(session, "session.status", payload)

    def _emit(self, session: FakeSession, event: str, payload: dict[str, Any]) -> None:
        body: dict[str, Any] = {
            "event": event, "session": session.name, "metadata": (session.config or {}).get("metadata"),
            "me": {"id": f"{session.phone}@c.us", "pushName": "Салон"} if session.status == "WORKING" else None,
            "payload": payload, "engine": "NOWEB",
            "environment": {"version": "2024.10.8", "engine": "NOWEB", "tier": self.tier},
        }
        if self.newer:
            body = {"id": "evt_" + uuid.uuid4().hex, "timestamp": int(time.time() * 1000), **body}
        raw = json.dumps(body).encode()
        for hook in session.webhooks:
            if event not in hook.get("events", []) and "*" not in hook.get("events", []):
                continue
            headers = {"Content-Type": "application/json", "User-Agent": "WAHA/2024.10.8"}
            key = (hook.get("hmac") or {}).get("key")
            if key and self.newer:
                headers["X-Webhook-Hmac"] = hmac.new(key.encode(), raw, hashlib.sha512).hexdigest()
                headers["X-Webhook-Hmac-Algorithm"] = "sha512"
            self.post_event(hook["url"], body, headers, raw)  # WAHA posts once and only logs a failure

    # --- the HTTP API --------------------------------------------------------------------------

    def _handle(self, handler: BaseHTTPRequestHandler, method: str) -> None:
        url = urlsplit(handler.path)
        body = self.read_json(handler)
        self.calls.append((method, url.path))
        if handler.headers.get("X-Api-Key") != API_KEY:
            return self.reply_json(handler, 401, {"message": "Unauthorized"})
        parts = url.path.strip("/").split("/")
        query = {k: v[0] for k, v in parse_qs(url.query).items()}
        with self._lock:
            status, answer, after = self._route(method, parts, body, query)
        self.reply_json(handler, status, answer)
        if after is not None:
            after()

    def _allowed(self, name: str) -> bool:
        return self.tier != "CORE" or name == "default"

    def _info(self, session: FakeSession) -> dict[str, Any]:
        me = {"id": f"{session.phone}@c.us", "pushName": "Салон"} if session.status == "WORKING" else None
        return {"name": session.name, "status": session.status, "config": session.config, "me": me,
                "engine": {"engine": "NOWEB"}}

    def _started(self, session: FakeSession) -> Any:
        """Start the engine: WORKING again with saved credentials, else a first QR."""
        session.status = "STARTING"
        if session.phone:
            session.status = "WORKING"
            return lambda: self._emit_status(session)
        return lambda: (self._emit_status(session), self.new_qr(session.name))

    def _route(self, method: str, parts: list[str], body: dict[str, Any],
               query: dict[str, str]) -> tuple[int, Any, Any]:
        unprocessable = (422, {"statusCode": 422, "message": ONLY_DEFAULT, "error": "Unprocessable Entity"}, None)
        if parts == ["api", "version"]:
            return 200, {"version": "2024.10.8", "engine": "NOWEB", "tier": self.tier}, None
        if parts == ["api", "sessions"] and method == "POST":
            name = body["name"]
            if not self._allowed(name):
                return unprocessable
            if name in self.sessions:
                return 422, {"statusCode": 422, "message": f"Session '{name}' already exists. Use PUT to update it.",
                             "error": "Unprocessable Entity"}, None
            session = self.sessions[name] = FakeSession(name, body.get("config"))
            if body.get("start"):
                return 201, self._info(session), self._started(session)
            return 201, self._info(session), None
        if parts[:2] == ["api", "sessions"] and len(parts) >= 3:
            return self._session_route(method, parts[2], parts[3] if len(parts) > 3 else None, body, unprocessable)
        if len(parts) == 4 and parts[0] == "api" and parts[2] == "auth":
            session = self.sessions.get(parts[1])
            if session is None or session.status in ("STOPPED", "FAILED"):
                return 404, {"message": "Session not found or not running"}, None
            if session.status != "SCAN_QR_CODE":
                return 422, {"message": "Unprocessable", "status": session.status, "expected": ["SCAN_QR_CODE"]}, None
            if parts[3] == "qr":
                return 200, {"value": session.qr}, None
            if parts[3] == "request-code":
                session.pairing.append(body["phoneNumber"])
                return 201, {"code": "ABCD-EFGH"}, None
        return self._chatting(parts, body, query)

    def _session_route(self, method: str, name: str, action: str | None, body: dict[str, Any],
                       unprocessable: tuple[int, Any, Any]) -> tuple[int, Any, Any]:
        session = self.sessions.get(name)
        if action is None and method == "GET":
            if session is None:
                return 404, {"message": "Session not found"}, None
            return 200, self._info(session), None
        if action in ("start", "stop", "restart", "logout") or method in ("PUT", "DELETE"):
            if not self._allowed(name):
                return unprocessable
        if action is None and method == "DELETE":
            if session is not None:
                del self.sessions[name]
            return 200, {}, None
        if session is None:
            return 404, {"message": "Session not found"}, None
        running = session.status not in ("STOPPED",)
        if action is None and method == "PUT":
            session.config = body.get("config")
            if running:
                return 200, self._info(session), self._started(session)
            return 200, self._info(session), None
        if action == "start":
            if running:
                return 422, {"message": f"Session '{name}' is already started."}, None
            return 201, self._info(session), self._started(session)
        if action == "stop":
            was = session.status
            session.status, session.qr = "STOPPED", None
            return 201, self._info(session), (lambda: self._emit_status(session)) if was != "STOPPED" else None
        if action == "restart":
            return 201, self._info(session), self._started(session)
        if action == "logout":
            session.phone, session.qr = None, None
            if running:  # WAHA starts a running session again, with a new login
                return 201, self._info(session), self._started(session)
            return 201, self._info(session), None
        return 404, {"message": "Not found"}, None

    def _chatting(self, parts: list[str], body: dict[str, Any], query: dict[str, str]) -> tuple[int, Any, Any]:
        name = body.get("session") or query.get("session") or ""
        session = self.sessions.get(name)
        if parts[:1] == ["api"] and parts[1:] in (["sendText"], ["startTyping"], ["stopTyping"],
                                                   ["contacts", "check-exists"]):
            if session is None or session.status != "WORKING":
                return 422, {"message": "Session status is not as expected. Expected: WORKING"}, None
        if parts == ["api", "sendText"]:
            digits = body["chatId"].split("@", 1)[0]
            key = {"remoteJid": f"{digits}@s.whatsapp.net", "fromMe": True, "id": uuid.uuid4().hex[:20].upper()}
            message_id = f"true_{digits}@c.us_{key['id']}"
            self.sent_text.append({**body, "id": message_id})
            # NOWEB answers Baileys' own message object.
            return 201, {"key": key, "message": {"extendedTextMessage": {"text": body["text"]}},
                         "messageTimestamp": str(int(time.time())), "status": "PENDING"}, None
        if parts in (["api", "startTyping"], ["api", "stopTyping"]):
            self.typing.append((parts[1], body["chatId"]))
            return 201, {}, None
        if parts == ["api", "contacts", "check-exists"]:
            phone = query.get("phone", "")
            exists = phone not in self.not_on_whatsapp
            return 200, {"numberExists": exists, "chatId": f"{phone}@c.us" if exists else None}, None
        return 404, {"message": "Not found"}, None
