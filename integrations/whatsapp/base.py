"""The WhatsApp gateway interface: what the service needs from any gateway."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

# A gateway event in WAHA's shape, the service's internal format: {"event", "session", "me", "payload"}, with
# "id"/"timestamp" only when the gateway sends them. Events: "session.status" (payload {"status"} and, where the
# gateway reports one, a WhatsApp disconnect "code" or a "reason"), "message" (payload {"id", "from", "body",
# "fromMe", "timestamp"}) and "message.ack" (payload {"id", "ack", "ackName"}).
GatewayEvent = dict[str, Any]
Deliver = Callable[[GatewayEvent], None]
# schedule(task_name, args, countdown_seconds): run a named task later, in any worker process.
Schedule = Callable[[str, list[Any], float], None]


def message_key(message_id: object) -> str | None:
    """WhatsApp's own key of a message, from any form a gateway gives its id.

    WAHA serialises ids as ``<fromMe>_<chat>_<key>[_<participant>]`` (``{"_serialized": …}`` in
    WEBJS) in events but NOWEB answers a send with the bare ``key.id``; Evolution gives ``key.id``.
    """
    if isinstance(message_id, dict):
        message_id = message_id.get("_serialized") or message_id.get("id")
    if not isinstance(message_id, str) or not message_id or len(message_id) > 256:
        return None
    parts = message_id.split("_")
    if len(parts) >= 3 and parts[0] in ("true", "false"):
        return parts[2] or None
    return message_id


class GatewayError(Exception):
    """The gateway refused a request or could not be reached.

    ``status`` is the gateway's HTTP status when it answered. ``never_sent`` is True when the request
    provably did not reach the gateway (connection refused, name not resolved), False when it may
    have (a timeout after the request went out, a broken answer): a message in that state is not
    sent again blindly.
    """

    def __init__(self, message: str, status: int | None = None, never_sent: bool = False) -> None:
        super().__init__(message)
        self.status = status
        self.never_sent = never_sent or status is not None

    @property
    def unavailable(self) -> bool:
        """The gateway is down or failing (no answer, or a 5xx): the request is worth repeating later."""
        return self.status is None or self.status >= 500


@dataclass(frozen=True)
class QrCode:
    """A raw QR string as WhatsApp issues it; ``expires_in`` when the gateway knows it."""

    value: str
    expires_in: float | None = None


@dataclass(frozen=True)
class SessionInfo:
    """A session as the gateway sees it (WAHA's states), the linked phone once WORKING, and the WhatsApp
    disconnect code of its last close when the gateway keeps one; ``exists`` is False for an unknown session."""

    status: str
    phone: str | None = None
    code: int | None = None
    exists: bool = True


@dataclass(frozen=True)
class GatewayInfo:
    """What a gateway is: its kind and version, and the one session name it serves when it serves only one
    (WAHA Core: ``default``); None means a session per company."""

    kind: str
    version: str | None = None
    tier: str | None = None
    only_session: str | None = None


class SingleSessionOnly(GatewayError):
    """The gateway serves one session only (WAHA Core) and was asked for another."""


class WhatsAppGateway(ABC):
    """What the service needs from a gateway that holds WhatsApp linked-device sessions."""

    def describe(self) -> GatewayInfo:
        """The gateway's kind, version and session capacity (adapters that can ask, ask; cached)."""
        return GatewayInfo(kind=type(self).__name__)

    @abstractmethod
    def start(self, session: str, webhook_url: str | None = None, hmac_key: str | None = None) -> None:
        """Create the session if needed and begin a fresh login attempt (QR codes follow as events)."""

    @abstractmethod
    def restart(self, session: str, webhook_url: str | None = None, hmac_key: str | None = None) -> None:
        """Reconnect the session with its saved credentials; a session the gateway lost is created again."""

    @abstractmethod
    def qr(self, session: str) -> QrCode | None:
        """The current QR code of a session waiting for a scan, or None."""

    @abstractmethod
    def request_pairing_code(self, session: str, phone_digits: str) -> str:
        """An 8-character pairing code for linking by phone number (cancels an earlier one)."""

    def attempt_ends_in(self, session: str) -> float | None:
        """Seconds the current login attempt (and so a pairing code) has left, when the gateway knows."""
        return None

    @abstractmethod
    def info(self, session: str) -> SessionInfo:
        """The session's current state."""

    @abstractmethod
    def stop(self, session: str) -> None:
        """Stop the session, keeping its credentials (it sends no events until started again)."""

    def end_attempt(self, session: str) -> None:
        """End a login attempt nobody finished (nothing is linked yet, so nothing is lost)."""
        self.stop(session)

    @abstractmethod
    def logout(self, session: str) -> None:
        """Unlink the device for good and forget the session (idempotent)."""

    @abstractmethod
    def send_text(self, session: str, phone_digits: str, text: str) -> str:
        """Send a text message to ``phone_digits`` from the linked number; returns the gateway's message id."""

    @abstractmethod
    def typing(self, session: str, phone_digits: str, seconds: float) -> None:
        """Show "typing…" to ``phone_digits`` for about ``seconds`` (returns when it is over)."""

    @abstractmethod
    def number_exists(self, session: str, phone_digits: str) -> bool:
        """True when ``phone_digits`` has a WhatsApp account."""

    def translate(self, body: dict[str, Any]) -> list[GatewayEvent]:
        """The internal events one webhook delivery of this gateway carries (WAHA's shape: itself)."""
        return [body]

