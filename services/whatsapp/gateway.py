"""The app's WhatsApp gateway (chosen by settings), session naming, and the simulator's controls."""

from __future__ import annotations

from typing import Any, cast

from flask import Flask, current_app

from integrations.whatsapp import GatewayError, SimulatorGateway, WhatsAppGateway, make_gateway
from services.phones import parse_phone, whatsapp_digits
from services.platform import outages, runtime
from services.platform.errors import Conflict, NotFound
from services.platform.jobs import Job, enqueue
from services.whatsapp import held_events, receipts

SESSION_PREFIX = "company-"
# The failure reason of a company a single-session gateway (WAHA Core) cannot serve.
SINGLE_SESSION_REASON = "gateway_single_session"


EXTENSION = "whatsapp_gateway"


def _schedule(name: str, args: list[Any], countdown: float) -> None:
    enqueue(name, *args, after_commit=False, countdown=countdown)


class _Watched:
    """A real gateway whose every call reports to the outage register: unreachable or a 5xx opens (or
    extends) the gateway's outage, any answer closes it (a refusal is an answer: the gateway is up)."""

    def __init__(self, inner: WhatsAppGateway) -> None:
        self._inner = inner

    def __getattr__(self, name: str) -> Any:
        attribute = getattr(self._inner, name)
        if not callable(attribute):
            return attribute

        def call(*args: Any, **kwargs: Any) -> Any:
            try:
                result = attribute(*args, **kwargs)
            except GatewayError as exc:
                if exc.unavailable:
                    outages.failed(outages.WHATSAPP_GATEWAY, str(exc))
                else:
                    outages.recovered(outages.WHATSAPP_GATEWAY)
                raise
            outages.recovered(outages.WHATSAPP_GATEWAY)
            return result

        return call


def init_app(app: Flask) -> None:
    """Give ``app`` the gateway its settings choose; simulator timers and events go through Celery by name."""
    settings = app.config["SETTINGS"]
    chosen = make_gateway(settings, app.extensions["redis"], _schedule, deliver_event)
    # The simulator is part of this service and never away; a real gateway's reachability is watched.
    app.extensions[EXTENSION] = chosen if isinstance(chosen, SimulatorGateway) else _Watched(chosen)


def gateway() -> WhatsAppGateway:
    """The current app's gateway."""
    return cast(WhatsAppGateway, current_app.extensions[EXTENSION])


def deliver_event(event: dict[str, Any]) -> None:
    """Hand a gateway event on: a receipt to the next batch of receipts, any other to ``whatsapp.handle_event``
    (by parcel id: it carries the phone number), held until applied (``held_events``)."""
    if event.get("event") == receipts.KIND:
        receipts.add(event)
    else:
        enqueue(Job.WHATSAPP_HANDLE_EVENT, held_events.hold(event), after_commit=False)


def translate(body: dict[str, Any]) -> list[dict[str, Any]]:
    """The internal events in one delivery of the active gateway's webhook."""
    return gateway().translate(body)


def simulator_active() -> bool:
    """True when the built-in simulator is the gateway (development, tests, demos)."""
    return runtime.settings().whatsapp_gateway == "simulator"


def session_name(company_id: int) -> str:
    """The gateway session that holds this company's WhatsApp."""
    return f"{SESSION_PREFIX}{company_id}"


def company_id_for_session(name: object) -> int | None:
    """The company a gateway session belongs to, or None for a session that is not ours."""
    if not isinstance(name, str) or not name.startswith(SESSION_PREFIX):
        return None
    tail = name.removeprefix(SESSION_PREFIX)
    return int(tail) if tail.isdigit() else None



def _simulator() -> SimulatorGateway:
    current = gateway()
    if not isinstance(current, SimulatorGateway):
        raise NotFound("Симулятор WhatsApp выключен")
    return current


def simulate_scan(company_id: int, phone: str | None = None) -> str:
    """Simulator only: the salon's phone scans the current QR (or enters the pairing code)."""
    digits = whatsapp_digits(parse_phone(phone)) if phone else None
    try:
        return _simulator().scan(session_name(company_id), digits)
    except GatewayError:
        raise Conflict("Сессия WhatsApp не ожидает сканирования") from None


def simulate_disconnect(company_id: int, code: int) -> None:
    """Simulator only: WhatsApp drops the session with ``code`` (401, 428, 440, 515 …)."""
    _simulator().disconnect(session_name(company_id), code)


def simulate_reply(company_id: int, phone: str, text: str) -> str:
    """Simulator only: a client with ``phone`` writes ``text`` to the salon's number; the message id."""
    digits = whatsapp_digits(parse_phone(phone))
    try:
        return _simulator().reply(session_name(company_id), digits, text)
    except GatewayError:
        raise Conflict("WhatsApp салона не подключён") from None


def simulate_ack(company_id: int, message_id: str, ack: int) -> None:
    """Simulator only: the client's phone reports our message ``message_id`` delivered (2), read (3), failed (-1)."""
    _simulator().ack(session_name(company_id), message_id, ack)


def simulate_absent_number(phone: str) -> None:
    """Simulator only: ``phone`` has no WhatsApp account from now on."""
    _simulator().set_number_exists(whatsapp_digits(parse_phone(phone)), False)


def simulator_acks_due() -> int:
    """Simulator timer: the clients' phones confirm the messages sent a moment ago."""
    return _simulator().acks_due()


def simulator_rotate(session: str, attempt: str, index: int) -> bool:
    """Simulator timer: advance the QR rotation (ignored when stale)."""
    return _simulator().rotate(session, attempt, index)
