"""The WhatsApp gateway interface: what the service needs from any gateway."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

# A gateway event in WAHA's shape: {"id", "timestamp", "event": "session.status", "session", "me", "payload"}.
GatewayEvent = dict[str, Any]
Deliver = Callable[[GatewayEvent], None]
# schedule(task_name, args, countdown_seconds): run a named task later, in any worker process.
Schedule = Callable[[str, list[Any], float], None]


class GatewayError(Exception):
    """The gateway refused a request or could not be reached."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class QrCode:
    """A raw QR string as WhatsApp issues it; ``expires_in`` when the gateway knows it."""

    value: str
    expires_in: float | None = None


@dataclass(frozen=True)
class SessionInfo:
    """A session as the gateway sees it (WAHA's states) and the linked phone once WORKING."""

    status: str
    phone: str | None = None


class WhatsAppGateway(ABC):
    """What the service needs from a gateway that holds WhatsApp linked-device sessions."""

    @abstractmethod
    def start(self, session: str, webhook_url: str | None = None, hmac_key: str | None = None) -> None:
        """Create the session if needed and begin a fresh login attempt (QR codes follow as events)."""

    @abstractmethod
    def restart(self, session: str) -> None:
        """Reconnect the session with its saved credentials (or start a new login without them)."""

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
        """Stop the session, keeping its credentials."""

    @abstractmethod
    def logout(self, session: str) -> None:
        """Unlink the device and forget its credentials."""

    @abstractmethod
    def send_text(self, session: str, phone_digits: str, text: str) -> None:
        """Send a text message to ``phone_digits`` from the linked number."""

