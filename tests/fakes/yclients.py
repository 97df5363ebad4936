"""A local HTTP server that answers as YClients' marketplace partner API does, and records calls.

Answers are scripted per salon (``fake.script(salon_id, created(), server_error())``); a salon
with no script left gets YClients' own answer: ``201 Created`` for the activation callback, and for
``GET /marketplace/salon/{salon_id}/application/{application_id}`` the installation that
``fake.install(salon_id, status)`` set up (200 with ``data.connection_status``), else 404. Shapes
follow YClients' documentation and what production saw; ``GET /api/v1/company/{id}`` answers the
details ``fake.company(...)`` set, and ``PUT /api/v1/visits/{visit}/{record}`` writes the attendance of
a record ``fake.visit(...)`` made known (``fake.attendance``). 201 JSON, 301 with an HTML body, 403
"already installed", 401 "Authentication needed." without a valid partner token, 422, 500, and
answers slower than a timeout.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
import threading
from collections import defaultdict, deque
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from typing import Any

from tests.fakes.local_http import LocalHTTPServer

PARTNER_TOKEN = "test-partner-token-0123456789"
APPLICATION_ID = 4242
INSTALLATION_PATH = re.compile(r"^/marketplace/salon/(\d+)/application/(\d+)/?$")
COMPANY_PATH = re.compile(r"^/api/v1/company/(\d+)/?$")
VISIT_PATH = re.compile(r"^/api/v1/visits/(\d+)/(\d+)/?$")


def signed_user_data(user: dict[str, Any], partner_token: str = PARTNER_TOKEN) -> tuple[str, str]:
    """``(user_data, user_data_sign)`` as YClients puts them in the install redirect."""
    raw = json.dumps(user, ensure_ascii=False).encode()
    return base64.b64encode(raw).decode(), hmac.new(partner_token.encode(), raw, hashlib.sha256).hexdigest()


@dataclass
class Reply:
    """One scripted answer."""

    status: int
    body: str
    content_type: str = "application/json"
    delay: float = 0.0
    headers: dict[str, str] = field(default_factory=dict)


def _v2(success: bool, data: Any = None, message: str | None = None) -> str:
    meta = {"message": message} if message else []
    return json.dumps({"success": success, "data": data, "meta": meta}, ensure_ascii=False)


def created() -> Reply:
    return Reply(201, _v2(True, {"success": True}))


def redirect_html() -> Reply:
    return Reply(
        301,
        "<html><head><title>Moved</title></head><body>Redirecting to yclients.com</body></html>",
        "text/html; charset=UTF-8",
        headers={"Location": "https://yclients.com/appstore/"},
    )


def already_installed() -> Reply:
    return Reply(403, _v2(False, None, "Пользователь уже установил это приложение"))


def unauthorized() -> Reply:
    return Reply(401, _v2(False, None, "Необходима авторизация"))


def installation(status: str, created_at: str = "2024-09-16 12:00:00") -> Reply:
    """YClients' answer about an installation: its state, the change log and payments (none here)."""
    logs = [{"changed_at": created_at, "status_from": "uninstalled", "status_to": "pending", "source": "marketplace"}]
    data = {"logs": logs, "payments": [], "connection_status": {"status": status, "created_at": created_at}}
    return Reply(200, json.dumps({"success": True, "data": data, "meta": {}}))


def not_found() -> Reply:
    return Reply(404, _v2(False, None, "Not found"))


def unprocessable(message: str = "Неверный api_key") -> Reply:
    return Reply(422, _v2(False, None, message))


def bad_request() -> Reply:
    return Reply(400, _v2(False, None, "Агрегатор не найден"))


def server_error() -> Reply:
    return Reply(500, "<html><body>502 Bad Gateway</body></html>", "text/html")


def too_many() -> Reply:
    return Reply(429, _v2(False, None, "Too Many Requests"))


def slow(seconds: float, reply: Reply | None = None) -> Reply:
    base = reply or created()
    return Reply(base.status, base.body, base.content_type, seconds, base.headers)


@dataclass
class Recorded:
    """A request the fake received."""

    method: str
    path: str
    headers: dict[str, str]
    body: Any


class FakeYClients(LocalHTTPServer):
    """The server; ``url`` is what ``YCLIENTS_API_URL`` should be set to."""

    def __init__(self, address: str = "127.0.0.1") -> None:
        super().__init__(address)
        self.requests: list[Recorded] = []
        self._scripts: dict[int | None, deque[Reply]] = defaultdict(deque)
        self._installations: dict[tuple[str, int, int], str] = {}
        self._companies: dict[int, dict[str, Any]] = {}
        # (visit_id, record_id) -> salon_id of the records the fake knows; their attendance as written.
        self._visits: dict[tuple[int, int], int] = {}
        self.attendance: dict[tuple[int, int], int] = {}
        self._lock = threading.Lock()
        self._stopping = threading.Event()

    def stop(self) -> None:
        self._stopping.set()
        super().stop()

    def script(self, salon_id: int | None, *replies: Reply) -> None:
        """Queue answers for calls about ``salon_id`` (None: for calls naming no salon)."""
        with self._lock:
            self._scripts[salon_id].extend(replies)

    def install(
        self, salon_id: int, status: str = "pending", application_id: int = APPLICATION_ID,
        partner_token: str = PARTNER_TOKEN,
    ) -> None:
        """Our application is installed in ``salon_id`` (``pending`` until activated, ``active``, ``freezed``)."""
        with self._lock:
            self._installations[(partner_token, application_id, salon_id)] = status

    def company(self, salon_id: int, title: str, address: str, timezone_name: str = "Europe/Moscow",
                offset_hours: int = 3) -> None:
        """The salon's details as ``GET /api/v1/company/{id}`` gives them."""
        with self._lock:
            self._companies[salon_id] = {"id": salon_id, "title": title, "address": address, "phone": "+74950000000",
                                         "timezone_name": timezone_name, "timezone": offset_hours}

    def visit(self, salon_id: int, record_id: int, visit_id: int) -> None:
        """A record (and its visit) exists in ``salon_id``, so its attendance can be written."""
        with self._lock:
            self._visits[(visit_id, record_id)] = salon_id

    def reset(self) -> None:
        with self._lock:
            self._scripts.clear()
            self._installations.clear()
            self._companies.clear()
            self._visits.clear()
            self.attendance.clear()
            self.requests.clear()

    def calls_for(self, salon_id: int) -> list[Recorded]:
        """Recorded requests that name ``salon_id`` (in the JSON body, or in the path of a GET)."""
        with self._lock:
            return [r for r in self.requests if self._salon_of(r.path, r.body) == salon_id]

    def callbacks_for(self, salon_id: int) -> list[Recorded]:
        """The activation callbacks (``POST /marketplace/partner/callback``) recorded for ``salon_id``."""
        return [r for r in self.calls_for(salon_id) if r.method == "POST" and r.path.endswith("/partner/callback")]

    def _handle(self, handler: BaseHTTPRequestHandler, method: str) -> None:
        length = int(handler.headers.get("Content-Length") or 0)
        raw = handler.rfile.read(length) if length else b""
        try:
            body = json.loads(raw) if raw else None
        except ValueError:
            body = raw.decode(errors="replace")
        with self._lock:
            salon_id = self._salon_of(handler.path, body)
            self.requests.append(Recorded(method, handler.path, dict(handler.headers.items()), body))
            # The company details fetch that follows every activation answers from ``company(...)`` only,
            # so it never takes an answer scripted for the callback, an installation check or a visit.
            queue = None if COMPANY_PATH.match(handler.path) else self._scripts.get(salon_id)
            reply = queue.popleft() if queue else None
        if reply is None:
            reply = self._default(handler, body)
        if reply.delay and self._stopping.wait(reply.delay):
            return
        data = reply.body.encode()
        try:
            handler.send_response(reply.status)
            handler.send_header("Content-Type", reply.content_type)
            handler.send_header("Content-Length", str(len(data)))
            for name, value in reply.headers.items():
                handler.send_header(name, value)
            handler.end_headers()
            handler.wfile.write(data)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client gave up (timeout tests)

    def _default(self, handler: BaseHTTPRequestHandler, body: Any) -> Reply:
        # "Bearer <partner token>", and for salon API calls optionally ", User <user token>".
        scheme, _, token = (handler.headers.get("Authorization") or "").split(",")[0].partition(" ")
        with self._lock:
            known = {PARTNER_TOKEN} | {key[0] for key in self._installations}
            installations = dict(self._installations)
        if scheme != "Bearer" or token not in known:
            return Reply(401, _v2(False, None, "Authentication needed."))
        found = INSTALLATION_PATH.match(handler.path)
        if found and handler.command == "GET":
            status = installations.get((token, int(found.group(2)), int(found.group(1))))
            return installation(status) if status else not_found()
        found = COMPANY_PATH.match(handler.path)
        if found and handler.command == "GET":
            with self._lock:
                company = self._companies.get(int(found.group(1)))
            return Reply(200, _v2(True, company)) if company else Reply(404, _v2(False, None, "Компания не найдена"))
        found = VISIT_PATH.match(handler.path)
        if found and handler.command == "PUT":
            return self._write_attendance((int(found.group(1)), int(found.group(2))), body)
        if handler.path.rstrip("/") != "/marketplace/partner/callback" or handler.command != "POST":
            return not_found()
        return created()


    def _write_attendance(self, visit: tuple[int, int], body: Any) -> Reply:
        """YClients' visit update: both ``attendance`` and ``comment`` are required."""
        if not isinstance(body, dict) or "attendance" not in body or "comment" not in body:
            return Reply(422, _v2(False, None, "Поля attendance и comment обязательны"))
        if body["attendance"] not in (-1, 0, 1, 2):
            return Reply(422, _v2(False, None, "Недопустимое значение attendance"))
        with self._lock:
            if visit not in self._visits:
                return Reply(404, _v2(False, None, "Визит не найден"))
            self.attendance[visit] = body["attendance"]
        return Reply(200, _v2(True, {"id": visit[0], "attendance": body["attendance"]}))

    def _salon_of(self, path: str, body: Any) -> int | None:
        """The salon a request is about (its path or body names it; a visit's through the records known)."""
        for pattern in (INSTALLATION_PATH, COMPANY_PATH):
            found = pattern.match(path)
            if found:
                return int(found.group(1))
        found = VISIT_PATH.match(path)
        if found:
            return self._visits.get((int(found.group(1)), int(found.group(2))))
        return body.get("salon_id") if isinstance(body, dict) else None
