"""Socket.IO, the protocol of the API reference's WebSocket section: ``/socket.io/``, namespace ``/marketplace``.

python-socketio in threading mode under gunicorn's gthread workers; its WebSocket transport is
simple-websocket, as flask-sock's. The events are the live protocol's (``web.live_protocol``), the same
as ``/marketplace/ws``. Fan-out: an authenticated client joins this process's room ``company:{id}``, and
while a room has members the process's event bus (one Redis subscriber) emits that company's events to
it. The bus is the one path between processes: a Socket.IO client manager as well would deliver every
event once more.

Engine.IO keeps a polling session in the process that opened it, so all requests of one client must
reach that process: ``make run`` has one web process, compose routes ``/socket.io/`` through nginx by
client address (README, "Topology").
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import Any

import engineio
import socketio
from flask import Flask
from socketio import packet
from werkzeug.wrappers import Request

from services.platform import json_input
from services.platform.errors import ServiceError
from services.platform.metrics import WEBSOCKET_CONNECTIONS
from services.platform.pubsub import EventBus, Message, company_channel
from services.platform.settings import Settings
from web import live_protocol, shutdown
from web.auth import presented_token
from web.engineio_server import EngineServer
from web.live_protocol import LiveClient
from web.ws_hub import SLOTS, SocketSlots

log = logging.getLogger(__name__)

NAMESPACE = "/marketplace"
EXTENSION = "socketio"
# Engine.IO's defaults, written down because the nginx read timeout must stay above their sum.
PING_INTERVAL, PING_TIMEOUT = 25, 20


class MalformedPacket(ValueError):
    """A packet this service does not accept: not bounded JSON, binary, or of a type clients never send."""


class _BoundedJson:
    """The ``json`` python-socketio and python-engineio read packets with: the one bounded reader."""

    dumps = staticmethod(json.dumps)

    @staticmethod
    def loads(raw: str | bytes, **_options: Any) -> Any:
        try:
            return json_input.load(raw)
        except json_input.JsonRejected as exc:
            raise MalformedPacket(exc.reason) from None


class _Packet(packet.Packet):
    """Socket.IO packets as this API's clients send them: CONNECT, DISCONNECT and EVENT, in JSON.

    Binary attachments are refused before any is kept (a BINARY_EVENT announces up to 10**10 of them,
    each buffered until the last arrives), and so are ACKs, which the server never asks for.
    """

    ACCEPTED = (packet.CONNECT, packet.DISCONNECT, packet.EVENT)

    def decode(self, encoded_packet: Any) -> int:
        try:
            attachments = int(super().decode(encoded_packet) or 0)
        except MalformedPacket:
            raise
        except (ValueError, TypeError) as exc:
            raise MalformedPacket(str(exc)) from None
        if attachments or self.packet_type not in self.ACCEPTED:
            raise MalformedPacket(f"packet type {self.packet_type} is not accepted")
        return attachments


class _Session:
    """One Engine.IO session as ``web.shutdown`` closes it: the transport ends, so the client reconnects."""

    def __init__(self, server: socketio.Server, eio_sid: str) -> None:
        self._eio = server.eio
        self._eio_sid = eio_sid

    def close(self, reason: int | None = None, message: str | None = None) -> None:
        """Send Engine.IO's CLOSE and end the session without waiting for the client to read it."""
        self._eio.disconnect(self._eio_sid)


class _Server(socketio.Server):
    """python-socketio's server with this service's admission and packet rules.

    Internal hooks of python-socketio (pinned with python-engineio in requirements.txt) are extended, each
    covered by tests: the Engine.IO server class; every Engine.IO session takes one of the process's socket
    slots while it lives (polling or WebSocket, it holds a gunicorn thread); a client authenticated by its
    handshake gets ``authenticated`` once its CONNECT has been sent; and a packet this service does not
    accept closes its session, as the reference Socket.IO server closes a session on a parse error.
    """

    def __init__(self, slots: SocketSlots, max_sockets: int, **options: Any) -> None:
        super().__init__(**options)
        self._slots = slots
        self._max_sockets = max_sockets
        self._lock = threading.Lock()
        self._slotted: set[str] = set()

    def _engineio_server_class(self) -> type[engineio.Server]:
        return EngineServer

    def _handle_eio_connect(self, eio_sid: str, environ: dict[str, Any]) -> Any:
        if not self._slots.acquire(self._max_sockets):
            return {"message": live_protocol.BUSY}  # Engine.IO refuses the handshake (401 with this body)
        with self._lock:
            self._slotted.add(eio_sid)
        return super()._handle_eio_connect(eio_sid, environ)

    def _handle_eio_disconnect(self, eio_sid: str, reason: Any = None) -> None:
        try:
            super()._handle_eio_disconnect(eio_sid, reason)
        finally:
            with self._lock:
                held = eio_sid in self._slotted
                self._slotted.discard(eio_sid)
            if held:
                self._slots.release()

    def _handle_connect(self, eio_sid: str, namespace: str | None, data: Any) -> None:
        super()._handle_connect(eio_sid, namespace, data)
        # Only now has the client its CONNECT: events sent from the connect handler would come first, and a
        # client that answers them at once (python-socketio's does) would emit on a namespace it has not got.
        sid = self.manager.sid_from_eio_sid(eio_sid, namespace or "/")
        handler = self.namespace_handlers.get(namespace or "/")
        if sid is not None and self.manager.is_connected(sid, namespace or "/") and isinstance(handler, _Marketplace):
            handler.connected(sid)

    def _handle_eio_message(self, eio_sid: str, data: Any) -> None:
        try:
            super()._handle_eio_message(eio_sid, data)
        except MalformedPacket as exc:
            log.info("closed a Socket.IO session after a packet it may not send (%s)", exc)
            self.eio.disconnect(eio_sid)


class _Rooms:
    """This process's company rooms; each is fed by one bus subscription while it has members."""

    def __init__(self, server: socketio.Server, bus: EventBus) -> None:
        self._server = server
        self._bus = bus
        self._lock = threading.Lock()
        self._company_of: dict[str, int] = {}
        self._members: dict[int, set[str]] = {}
        self._unsubscribe: dict[int, Callable[[], None]] = {}

    def join(self, sid: str, company_id: int) -> None:
        """Put ``sid`` in its company's room (leaving the one it was in)."""
        with self._lock:
            if self._company_of.get(sid) == company_id:
                return
            self._leave(sid)
            self._company_of[sid] = company_id
            self._members.setdefault(company_id, set()).add(sid)
            self._server.enter_room(sid, company_channel(company_id), namespace=NAMESPACE)
            if company_id not in self._unsubscribe:
                self._unsubscribe[company_id] = self._bus.subscribe(
                    company_channel(company_id), partial(self._deliver, company_id)
                )

    def leave(self, sid: str) -> None:
        """Take ``sid`` out of its room, if any."""
        with self._lock:
            self._leave(sid)

    def _leave(self, sid: str) -> None:
        company_id = self._company_of.pop(sid, None)
        if company_id is None:
            return
        self._server.leave_room(sid, company_channel(company_id), namespace=NAMESPACE)
        members = self._members[company_id]
        members.discard(sid)
        if not members:
            del self._members[company_id]
            self._unsubscribe.pop(company_id)()

    def _deliver(self, company_id: int, message: Message) -> None:
        # On the bus thread: emitting only queues the packet for each member (``EngineServer.send_packet``).
        if message.get("company_id") == company_id and isinstance(message.get("event"), str):
            self._server.emit(message["event"], message.get("data") or {}, room=company_channel(company_id),
                              namespace=NAMESPACE)


class _Transport:
    """How the live protocol reaches one Socket.IO client."""

    def __init__(self, server: socketio.Server, rooms: _Rooms, sid: str) -> None:
        self._server = server
        self._rooms = rooms
        self._sid = sid

    def send(self, event: str, data: dict[str, Any]) -> None:
        self._server.emit(event, data, to=self._sid, namespace=NAMESPACE)

    def watch(self, company_id: int) -> None:
        self._rooms.join(self._sid, company_id)


@dataclass
class _Connected:
    """A client of the namespace: its live-protocol side, its session, and the handshake data its welcome
    (``authenticated`` + ``status`` once CONNECT is out) is still to use, if it brought a token."""

    client: LiveClient
    session: _Session
    welcome: dict[str, Any] | None


class _Marketplace(socketio.Namespace):
    """The ``/marketplace`` namespace: every event goes to the live protocol inside an app context."""

    def __init__(self, app: Flask, server: socketio.Server, rooms: _Rooms) -> None:
        super().__init__(NAMESPACE)
        self._app = app
        self._sio = server
        self._rooms = rooms
        self._lock = threading.Lock()
        self._clients: dict[str, _Connected] = {}

    def trigger_event(self, event: str, *args: Any) -> Any:
        """Route ``connect``, ``disconnect`` and every client event (documented as overridable)."""
        with self._app.app_context():
            if event == "connect":
                return self._connect(*args)
            if event == "disconnect":
                self._disconnect(args[0])
                return None
            sid, *payload = args
            with self._lock:
                found = self._clients.get(sid)
            if found is not None:
                live_protocol.receive(found.client, event, payload[0] if payload else None)
            return None

    def _connect(self, sid: str, environ: dict[str, Any], auth: Any = None) -> bool:
        auth = auth if isinstance(auth, dict) else {}
        token = auth.get("token") if isinstance(auth.get("token"), str) else None
        client = LiveClient(_Transport(self._sio, self._rooms, sid), environ.get("REMOTE_ADDR") or "unknown",
                            token or presented_token(Request(environ)))
        try:
            live_protocol.admit(client.ip)
            if client.handshake_token:
                live_protocol.check_handshake(client, auth)
        except ServiceError as exc:
            data = live_protocol.error_data(exc)
            message = data.pop("message")
            raise socketio.exceptions.ConnectionRefusedError(*([message, data] if data else [message])) from None
        session = _Session(self._sio, self._sio.manager.eio_sid_from_sid(sid, NAMESPACE))
        with self._lock:
            self._clients[sid] = _Connected(client, session, auth if client.handshake_token else None)
        WEBSOCKET_CONNECTIONS.inc()
        shutdown.register(session)  # a stopping worker ends the session so the client reconnects elsewhere
        return True

    def connected(self, sid: str) -> None:
        """The client has its CONNECT: authenticate it with its handshake token, once (a CONNECT sent again
        is refused by python-socketio, and must not be a way to uncounted snapshots)."""
        with self._lock:
            found = self._clients.get(sid)
            if found is None or found.welcome is None:
                return
            welcome, found.welcome = found.welcome, None
        with self._app.app_context():
            live_protocol.welcome(found.client, welcome)

    def _disconnect(self, sid: str) -> None:
        with self._lock:
            found = self._clients.pop(sid, None)
        if found is None:
            return
        self._rooms.leave(sid)
        shutdown.unregister(found.session)
        WEBSOCKET_CONNECTIONS.dec()


def _quiet(name: str) -> logging.Logger:
    # python-socketio logs every packet at INFO and adds a handler of its own to a logger left unset.
    logger = logging.getLogger(name)
    logger.setLevel(logging.WARNING)
    return logger


def init_app(app: Flask) -> None:
    """Serve Socket.IO at ``/socket.io/`` in front of ``app`` (before ProxyFix wraps both)."""
    settings: Settings = app.config["SETTINGS"]
    server = _Server(
        app.extensions[SLOTS], settings.websocket_max_per_process,
        async_mode="threading", async_handlers=False,  # a client's events run in turn, on its own thread
        serializer=_Packet, json=_BoundedJson, max_http_buffer_size=json_input.MAX_BYTES,
        namespaces=[NAMESPACE], cors_allowed_origins=settings.socketio_origins,
        ping_interval=PING_INTERVAL, ping_timeout=PING_TIMEOUT,
        logger=_quiet("socketio.server"), engineio_logger=_quiet("engineio.server"),
    )
    server.register_namespace(_Marketplace(app, server, _Rooms(server, app.extensions["bus"])))
    app.extensions[EXTENSION] = server
    app.wsgi_app = socketio.WSGIApp(server, app.wsgi_app)  # type: ignore[method-assign]
