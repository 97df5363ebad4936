"""A local HTTP server that speaks WAHA's session API and POSTs its ``session.status`` events,
signed with HMAC-SHA512 (``X-Webhook-Hmac``), to the webhook URL a session was created with."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import threading
import time
import urllib.request
import uuid
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from typing import Any

from tests.fakes.local_http import LocalHTTPServer

API_KEY = "test-waha-api-key"


@dataclass
class FakeSession:
    name: str
    webhooks: list[dict[str, Any]]
    status: str = "STOPPED"
    qr: str | None = None
    phone: str | None = None
    pairing: list[str] = field(default_factory=list)


class FakeWaha(LocalHTTPServer):
    """The server; ``url`` is what ``WAHA_URL`` should be set to. Requests without the key get 401."""

    def __init__(self) -> None:
        super().__init__()
        self.sessions: dict[str, FakeSession] = {}
        self.calls: list[tuple[str, str]] = []
        self.sent_text: list[dict[str, Any]] = []
        self._lock = threading.Lock()

    # --- what the phone does -----------------------------------------------------------------

    def new_qr(self, name: str) -> None:
        """WhatsApp rotated the QR: WAHA re-sends SCAN_QR_CODE."""
        session = self.sessions[name]
        keys = [base64.b64encode(os.urandom(n)).decode() for n in (48, 32, 32, 32)]
        session.status, session.qr = "SCAN_QR_CODE", "2@" + ",".join(keys)
        self._emit(session)

    def scan(self, name: str, phone: str) -> None:
        """The phone scanned: WAHA reconnects by itself and reports WORKING with ``me``."""
        session = self.sessions[name]
        session.phone, session.qr = phone, None
        session.status = "WORKING"
        self._emit(session)

    def fail(self, name: str) -> None:
        session = self.sessions[name]
        session.status = "FAILED"
        self._emit(session)

    # --- the HTTP API --------------------------------------------------------------------------

    def _emit(self, session: FakeSession) -> None:
        body = {
            "id": "evt_" + uuid.uuid4().hex, "timestamp": int(time.time() * 1000), "event": "session.status",
            "session": session.name, "engine": "NOWEB",
            "me": {"id": f"{session.phone}@c.us", "pushName": "Салон"} if session.status == "WORKING" else None,
            "payload": {"status": session.status},
        }
        raw = json.dumps(body).encode()
        for hook in session.webhooks:
            headers = {"Content-Type": "application/json"}
            key = (hook.get("hmac") or {}).get("key")
            if key:
                headers["X-Webhook-Hmac"] = hmac.new(key.encode(), raw, hashlib.sha512).hexdigest()
                headers["X-Webhook-Hmac-Algorithm"] = "sha512"
            request = urllib.request.Request(hook["url"], data=raw, headers=headers, method="POST")
            with urllib.request.urlopen(request, timeout=5) as response:
                response.read()

    def _handle(self, handler: BaseHTTPRequestHandler, method: str) -> None:
        path = handler.path.split("?", 1)[0]
        length = int(handler.headers.get("Content-Length") or 0)
        body = json.loads(handler.rfile.read(length)) if length else {}
        self.calls.append((method, path))
        if handler.headers.get("X-Api-Key") != API_KEY:
            return self._reply(handler, 401, {"message": "Unauthorized"})
        parts = path.strip("/").split("/")
        with self._lock:
            status, answer, after = self._route(method, parts, body)
        self._reply(handler, status, answer)
        if after is not None:
            after()

    def _route(self, method: str, parts: list[str], body: dict[str, Any]) -> tuple[int, Any, Any]:
        if parts == ["api", "sessions"] and method == "POST":
            name = body["name"]
            session = FakeSession(name, (body.get("config") or {}).get("webhooks") or [])
            self.sessions[name] = session
            return 201, {"name": name, "status": "STARTING"}, lambda: self.new_qr(name)
        if parts[:2] == ["api", "sessions"] and len(parts) >= 3:
            session = self.sessions.get(parts[2])
            if session is None:
                return 404, {"message": "Session not found"}, None
            action = parts[3] if len(parts) > 3 else None
            if action is None and method == "GET":
                me = {"id": f"{session.phone}@c.us"} if session.status == "WORKING" else None
                return 200, {"name": session.name, "status": session.status, "me": me}, None
            if action in ("start", "restart"):
                if session.phone:
                    session.status = "WORKING"
                    return 201, {}, lambda: self._emit(session)
                return 201, {}, lambda: self.new_qr(session.name)
            if action in ("stop", "logout"):
                session.status, session.qr = "STOPPED", None
                if action == "logout":
                    session.phone = None
                return 201, {}, lambda: self._emit(session)
        if len(parts) == 4 and parts[0] == "api" and parts[2] == "auth":
            session = self.sessions.get(parts[1])
            if session is None or session.status != "SCAN_QR_CODE":
                return 422, {"message": "Session is not waiting for a QR"}, None
            if parts[3] == "qr":
                return 200, {"mimetype": "text/plain", "value": session.qr}, None
            if parts[3] == "request-code":
                session.pairing.append(body["phoneNumber"])
                return 201, {"code": "ABCD-EFGH"}, None
        if parts == ["api", "sendText"]:
            self.sent_text.append(body)
            return 201, {"id": "msg_1"}, None
        return 404, {"message": "Not found"}, None

    @staticmethod
    def _reply(handler: BaseHTTPRequestHandler, status: int, body: Any) -> None:
        raw = json.dumps(body).encode()
        handler.send_response(status)
        handler.send_header("Content-Type", "application/json")
        handler.send_header("Content-Length", str(len(raw)))
        handler.end_headers()
        handler.wfile.write(raw)
