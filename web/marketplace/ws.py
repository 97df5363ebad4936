"""``/marketplace/ws``: the live status socket (DESIGN.md §6), JSON frames ``{"event", "data"}``.

The handler is a short loop: it reads one client message at a time, answers it with a fresh
database session, and holds none while waiting. Events pushed by workers arrive on the bus thread.
"""

from __future__ import annotations

import json
import logging
import math
import time
from collections.abc import Callable
from typing import Any

from flask import current_app
from limits import parse
from simple_websocket import ConnectionClosed, Server

from models import db
from services.access import tokens
from services.platform import json_input, runtime
from services.platform.errors import ServiceError, Unauthorized
from services.platform.metrics import WEBSOCKET_CONNECTIONS
from services.whatsapp import codes, sessions
from web import shutdown
from web.auth import presented_token
from web.extensions import limiter, sock
from web.limits import client_ip
from web.marketplace import bp
from web.ws_hub import SLOTS, SocketConnection, SocketSlots

log = logging.getLogger(__name__)
TOO_MANY = "Too many requests"
NOT_AUTHENTICATED = "Требуется аутентификация"
BUSY = "Сервер перегружен, попробуйте позже"


def _retry_after_if_limited(ip: str) -> int | None:
    """Count this connection against the per-IP limit (shared in Redis); seconds to wait when over it."""
    settings = runtime.settings()
    if not settings.ratelimit_enabled:
        return None
    item = parse(settings.ratelimit_websocket)
    scope = settings.key("limits", "websocket")
    if limiter.limiter.hit(item, scope, ip):
        return None
    stats = limiter.limiter.get_window_stats(item, scope, ip)
    return max(1, math.ceil(stats.reset_time - time.time()))


def _authenticate(conn: SocketConnection, data: dict[str, Any], handshake_token: str | None) -> None:
    claims = tokens.verify_connect_token(data.get("token") or handshake_token)
    company_id = int(claims["company_id"])
    asked = data.get("companyId")
    if asked is not None and str(asked) != str(company_id):
        raise Unauthorized(tokens.INVALID_TOKEN)
    snapshot = sessions.snapshot(company_id)
    conn.watch(company_id)
    conn.send("authenticated", {"companyId": company_id})
    conn.send("status", snapshot)


def _get_qr(conn: SocketConnection, company_id: int) -> None:
    linked = codes.connected_answer(company_id)
    if linked:
        conn.send("whatsapp.connected", {"phone": linked["whatsapp_phone"], "companyId": company_id})
        return
    found = codes.current_qr(company_id)
    db.session.commit()
    if found:
        conn.send("qr", {"qr": found["qr"], "companyId": company_id, "expires_in": found["expires_in"]})


def _handle(conn: SocketConnection, raw: str | bytes, handshake_token: str | None) -> None:
    try:
        message = json_input.load_object(raw)
        event, data = message["event"], message.get("data") or {}
        if not isinstance(event, str) or not isinstance(data, dict):
            raise ValueError
    except (json_input.JsonRejected, ValueError, KeyError, TypeError):
        conn.send("error", {"message": "Некорректное сообщение"})
        return
    if event == "authenticate":
        _authenticate(conn, data, handshake_token)
        return
    if conn.company_id is None:
        conn.send("error", {"message": NOT_AUTHENTICATED})
        return
    asked = data.get("companyId")
    if asked is not None and str(asked) != str(conn.company_id):
        conn.send("error", {"message": "Нет доступа к этой компании"})
    elif event == "getQR":
        _get_qr(conn, conn.company_id)
    elif event == "getPairingCode":
        codes.request_pairing_code(conn.company_id, data.get("phone"))
        db.session.commit()
    else:
        conn.send("error", {"message": f"Неизвестное событие: {event[:40]}"})


@sock.route("/ws", bp=bp)
def websocket(ws: Server) -> None:
    """Authenticate, then stream the company's events until the client leaves or stops answering pings."""
    retry_after = _retry_after_if_limited(client_ip())
    if retry_after is not None:
        ws.send(json.dumps({"event": "error", "data": {"message": TOO_MANY, "retry_after": retry_after}}))
        ws.close(reason=1008, message=TOO_MANY)
        return
    slots: SocketSlots = current_app.extensions[SLOTS]
    if not slots.acquire(runtime.settings().websocket_max_per_process):
        # The page falls back to polling; HTTP keeps its threads.
        ws.send(json.dumps({"event": "error", "data": {"message": BUSY}}))
        ws.close(reason=1013, message="busy")
        return
    conn = SocketConnection(ws, runtime.bus())
    handshake_token = presented_token()
    WEBSOCKET_CONNECTIONS.inc()
    shutdown.register(ws)  # a stopping worker closes it with 1001 so the client reconnects elsewhere
    try:
        if handshake_token:
            _respond(conn, _authenticate, conn, {}, handshake_token)
        while conn.open:
            raw = ws.receive()
            if raw is not None:
                _respond(conn, _handle, conn, raw, handshake_token)
    except ConnectionClosed:
        pass
    finally:
        shutdown.unregister(ws)
        conn.close()
        db.session.remove()
        WEBSOCKET_CONNECTIONS.dec()
        slots.release()


def _respond(conn: SocketConnection, action: Callable[..., None], *args: Any) -> None:
    """Run one client request; domain errors become ``error`` frames; the DB session is released."""
    try:
        action(*args)
    except ServiceError as exc:
        db.session.rollback()
        conn.send("error", {"message": exc.message})
    finally:
        db.session.remove()
