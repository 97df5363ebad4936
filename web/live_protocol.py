"""The live status protocol (DESIGN.md §6), one for both transports: ``/marketplace/ws`` and Socket.IO.

A transport turns what arrives into ``(event, data)`` and calls ``receive``; it gives each client a
``Transport`` that sends one event and subscribes to one company. Everything else is here, so the two
protocols cannot disagree: admission (the per-IP connection limit), authentication and the ``status``
snapshot after it, ``getQR`` and ``getPairingCode``, the per-IP limit those actions share with their HTTP
twins, and every error message. Each call uses a fresh database session and releases it: no session is
held while a client waits.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from models import db
from services.access import tokens
from services.platform.errors import InvalidInput, ServiceError, Unauthorized
from services.whatsapp import codes, sessions
from web.limits import public_action_retry_after, socket_connection_retry_after

INVALID_MESSAGE = "Некорректное сообщение"
NOT_AUTHENTICATED = "Требуется аутентификация"
FOREIGN_COMPANY = "Нет доступа к этой компании"
TOO_MANY = "Too many requests"
BUSY = "Сервер перегружен, попробуйте позже"


class Transport(Protocol):
    """How one client of either protocol is reached."""

    def send(self, event: str, data: dict[str, Any]) -> None:
        """Deliver one event to this client."""

    def watch(self, company_id: int) -> None:
        """Deliver this company's events (and no other company's) to this client from now on."""


class RateLimited(ServiceError):
    """Over a per-IP limit; ``extra["retry_after"]`` says in how many seconds to try again."""


@dataclass
class LiveClient:
    """A connected client: its transport, address, the token its handshake carried, its company once known."""

    transport: Transport
    ip: str
    handshake_token: str | None = None
    company_id: int | None = None

    def send(self, event: str, data: dict[str, Any]) -> None:
        """Deliver one event to this client."""
        self.transport.send(event, data)


def admit(ip: str) -> None:
    """Count a new connection from ``ip`` (5 per 60 s in the reference); ``RateLimited`` over the limit."""
    retry_after = socket_connection_retry_after(ip)
    if retry_after is not None:
        raise RateLimited(TOO_MANY, retry_after=retry_after)


def error_data(exc: ServiceError) -> dict[str, Any]:
    """The ``error`` event (or Socket.IO ``connect_error``) data of a refusal."""
    return {"message": exc.message, **exc.extra}


def _company_of(client: LiveClient, data: dict[str, Any]) -> int:
    """The company of the token in ``data`` or the handshake; ``Unauthorized`` for a bad token or a
    ``companyId`` naming another company."""
    token = data.get("token") or client.handshake_token
    claims = tokens.verify_connect_token(token if isinstance(token, str) else None)
    company_id = int(claims["company_id"])
    asked = data.get("companyId")
    if asked is not None and str(asked) != str(company_id):
        raise Unauthorized(tokens.INVALID_TOKEN)
    return company_id


def authenticate(client: LiveClient, data: dict[str, Any]) -> None:
    """Bind the client to the company of its token, then send ``authenticated`` and the ``status`` snapshot."""
    company_id = _company_of(client, data)
    snapshot = sessions.snapshot(company_id)
    client.transport.watch(company_id)
    client.company_id = company_id
    client.send("authenticated", {"companyId": company_id})
    client.send("status", snapshot)


def _get_qr(client: LiveClient, company_id: int, data: dict[str, Any]) -> None:
    linked = codes.connected_answer(company_id)
    if linked:
        client.send("whatsapp.connected", {"phone": linked["whatsapp_phone"], "companyId": company_id})
        return
    found = codes.current_qr(company_id)
    db.session.commit()
    if found:  # else the attempt is starting: the worker publishes the QR as soon as it has one
        client.send("qr", {"qr": found["qr"], "companyId": company_id, "expires_in": found["expires_in"]})


def _get_pairing_code(client: LiveClient, company_id: int, data: dict[str, Any]) -> None:
    codes.request_pairing_code(company_id, data.get("phone"))
    db.session.commit()  # the worker publishes ``pairingCode`` (or ``error``) to the company


# The actions of an authenticated client; each counts against the public per-IP limit, as GET /qr and
# POST /pairing-code do over HTTP (and so does every authentication attempt).
ACTIONS: dict[str, Callable[[LiveClient, int, dict[str, Any]], None]] = {
    "getQR": _get_qr,
    "getPairingCode": _get_pairing_code,
}


def _count(client: LiveClient) -> None:
    retry_after = public_action_retry_after(client.ip)
    if retry_after is not None:
        raise RateLimited(TOO_MANY, retry_after=retry_after)


def _dispatch(client: LiveClient, event: object, data: object) -> None:
    data = {} if data is None else data
    if not isinstance(event, str) or not isinstance(data, dict):
        raise InvalidInput(INVALID_MESSAGE)
    if event == "authenticate":
        _count(client)
        authenticate(client, data)
        return
    if client.company_id is None:
        raise Unauthorized(NOT_AUTHENTICATED)
    action = ACTIONS.get(event)
    if action is None:
        raise InvalidInput(f"Неизвестное событие: {event[:40]}")
    _count(client)
    asked = data.get("companyId")
    if asked is not None and str(asked) != str(client.company_id):
        raise Unauthorized(FOREIGN_COMPANY)
    action(client, client.company_id, data)


def _answer(client: LiveClient, action: Callable[[], None]) -> None:
    """Run one client request; refusals (bad token, limits, validation) become ``error`` events."""
    try:
        action()
    except ServiceError as exc:
        db.session.rollback()
        client.send("error", error_data(exc))
    finally:
        db.session.remove()


def receive(client: LiveClient, event: object, data: object) -> None:
    """Answer one client event."""
    _answer(client, lambda: _dispatch(client, event, data))


def check_handshake(client: LiveClient, data: dict[str, Any] | None = None) -> None:
    """Count the authentication a handshake token (header, query, Socket.IO ``auth`` with its ``companyId``)
    asks for and check it; raises the refusal, for the transport to report its own way."""
    _count(client)
    _company_of(client, data or {})


def welcome(client: LiveClient, data: dict[str, Any] | None = None) -> None:
    """Authenticate a client whose handshake token ``check_handshake`` accepted (uncounted: it was)."""
    _answer(client, lambda: authenticate(client, data or {}))
