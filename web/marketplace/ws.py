"""``/marketplace/ws``: the live status socket (DESIGN.md §6), JSON frames ``{"event", "data"}``.

The protocol itself (authentication, snapshot, QR and pairing codes, limits, errors) is
``web.live_protocol``, shared with Socket.IO; this adapter reads one frame at a time and holds no
database session while waiting. Events pushed by workers arrive on the bus thread.
"""

from __future__ import annotations

import json
from typing import Any

from flask import current_app
from simple_websocket import ConnectionClosed, Server

from services.platform import json_input, runtime
from services.platform.errors import ServiceError
from services.platform.metrics import WEBSOCKET_CONNECTIONS
from web import live_protocol, shutdown
from web.auth import presented_token
from web.extensions import sock
from web.limits import client_ip
from web.live_protocol import LiveClient
from web.marketplace import bp
from web.ws_hub import SLOTS, SocketConnection, SocketSlots


def _refuse(ws: Server, exc: ServiceError, code: int, reason: str) -> None:
    ws.send(json.dumps({"event": "error", "data": live_protocol.error_data(exc)}, ensure_ascii=False))
    ws.close(reason=code, message=reason)


def _frame(raw: str | bytes) -> tuple[Any, Any]:
    """``(event, data)`` of one frame; ``(None, None)`` for one that is not a JSON object (an error reply)."""
    try:
        message = json_input.load_object(raw)
    except json_input.JsonRejected:
        return None, None
    return message.get("event"), message.get("data")


@sock.route("/ws", bp=bp)
def websocket(ws: Server) -> None:
    """Authenticate, then stream the company's events until the client leaves or stops answering pings."""
    ip = client_ip()
    try:
        live_protocol.admit(ip)
    except live_protocol.RateLimited as exc:
        _refuse(ws, exc, 1008, live_protocol.TOO_MANY)
        return
    slots: SocketSlots = current_app.extensions[SLOTS]
    if not slots.acquire(runtime.settings().websocket_max_per_process):
        # The page falls back to polling; HTTP keeps its threads.
        _refuse(ws, ServiceError(live_protocol.BUSY), 1013, "busy")
        return
    conn = SocketConnection(ws, runtime.bus())
    client = LiveClient(conn, ip, presented_token())
    WEBSOCKET_CONNECTIONS.inc()
    shutdown.register(ws)  # a stopping worker closes it with 1001 so the client reconnects elsewhere
    try:
        if client.handshake_token:
            try:
                live_protocol.check_handshake(client)
            except ServiceError as exc:
                conn.send("error", live_protocol.error_data(exc))
            else:
                live_protocol.welcome(client)
        while conn.open:
            raw = ws.receive()  # frames over the cap (SOCK_SERVER_OPTIONS) close the socket with 1009
            if raw is not None:
                live_protocol.receive(client, *_frame(raw))
    except ConnectionClosed:
        pass
    finally:
        shutdown.unregister(ws)
        conn.close()
        WEBSOCKET_CONNECTIONS.dec()
        slots.release()
