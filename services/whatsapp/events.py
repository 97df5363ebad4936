"""Clients' messages to a salon's number and receipts of ours, as gateways report them (WAHA's shape).

``handle_message`` and ``handle_ack`` turn a gateway's ``message`` / ``message.ack`` event into
plain facts and announce them with blinker signals; client messaging subscribes
(``services.messaging.hooks``), so the WhatsApp layer knows nothing of bookings or templates.
Receivers store what they need durably and deduplicated (by the salon and the message's key).

Message ids are compared by WhatsApp's own message key (``integrations.whatsapp.message_key``).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from blinker import Signal

from integrations.whatsapp.base import message_key
from models import Company, IntegrationStatus
from services.phones import from_whatsapp_id

log = logging.getLogger(__name__)

message_received = Signal("a client's message reached a salon's number (IncomingMessage)")
receipt_received = Signal("a gateway reported one of our messages sent, delivered, read or failed (Receipt)")

# WAHA's ack levels (ERROR, PENDING, SERVER, DEVICE, READ, PLAYED) as the states of our messages.
KINDS = ("message", "message.ack")
ACK_STATUS = {-1: "failed", 1: "sent", 2: "delivered", 3: "read", 4: "read"}
MAX_TEXT = 4096


@dataclass(frozen=True)
class IncomingMessage:
    company_id: int
    message_id: str
    phone: str
    text: str
    sent_at: datetime | None


@dataclass(frozen=True)
class Receipt:
    company_id: int
    message_id: str
    status: str


def _sent_at(value: object) -> datetime | None:
    if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
        return None
    seconds = value / 1000 if value > 10**11 else value  # WAHA gives seconds; some engines milliseconds
    try:
        return datetime.fromtimestamp(seconds, UTC)
    except (OverflowError, OSError, ValueError):
        return None


def handle_message(company_id: int, payload: dict[str, Any]) -> str:
    """A ``message`` event: a client's text to the salon, announced once it is plainly one."""
    if payload.get("fromMe") is not False:
        return "ignored: our own message"
    phone = from_whatsapp_id(payload.get("from"))
    key = message_key(payload.get("id"))
    text = payload.get("body")
    if phone is None or key is None:
        log.info("company %s: a message from a group or a hidden number was not taken", company_id)
        return "ignored: no phone"
    if not isinstance(text, str) or not text.strip():
        return "ignored: no text"
    message_received.send(IncomingMessage(company_id, key, phone, text[:MAX_TEXT], _sent_at(payload.get("timestamp"))))
    return "message"


def handle_ack(company_id: int, payload: dict[str, Any]) -> str:
    """A ``message.ack`` event for one of our messages."""
    key = message_key(payload.get("id"))
    ack = payload.get("ack")
    status = ACK_STATUS.get(ack) if isinstance(ack, int) and not isinstance(ack, bool) else None
    if key is None or status is None or payload.get("fromMe") is False:
        return "ignored"
    receipt_received.send(Receipt(company_id, key, status))
    return f"ack: {status}"


def handle(company: Company, kind: str, payload: dict[str, Any]) -> str:
    """One ``message`` or ``message.ack`` event for ``company``; a closed salon's are not taken."""
    if company.integration_status in IntegrationStatus.CLOSED:
        return "closed"
    if kind == "message":
        return handle_message(company.id, payload)
    return handle_ack(company.id, payload)
