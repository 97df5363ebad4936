"""Where client messaging listens: the mirror's booking changes and the gateway's messages and receipts.

``connect()`` is called by ``create_app``, so every process that processes webhooks or gateway
events (the worker) plans messages and acts on replies; neither producer imports messaging.
"""

from __future__ import annotations

from services.messaging import booking_changes, inbound
from services.webhooks.changes import BookingChange, booking_changed
from services.whatsapp.events import IncomingMessage, Receipt, message_received, receipt_received


def _booking_changed(change: BookingChange) -> None:
    booking_changes.plan_booking_change(change)


def _message_received(message: IncomingMessage) -> None:
    inbound.receive(message.company_id, message.message_id, message.phone, message.text, message.sent_at)


def _receipt_received(receipt: Receipt) -> None:
    inbound.apply_receipt(receipt.company_id, receipt.message_id, receipt.status)


def connect() -> None:
    """Subscribe messaging to its producers (idempotent: blinker keeps one connection per receiver)."""
    booking_changed.connect(_booking_changed, weak=False)
    message_received.connect(_message_received, weak=False)
    receipt_received.connect(_receipt_received, weak=False)
