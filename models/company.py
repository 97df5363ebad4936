"""A salon that installed the integration."""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from sqlalchemy import BigInteger, Integer, String
from sqlalchemy.orm import Mapped, mapped_column, validates

from models.db import Base, UTCDateTime, utcnow

# Until YClients tells us the salon's own zone (the company's ``timezone_name``).
DEFAULT_TIMEZONE = "Europe/Moscow"


class IntegrationStatus:
    """Values of ``Company.integration_status`` (DESIGN.md §5)."""

    PENDING = "pending"
    CONNECTING = "connecting"
    CONNECTED = "connected"
    ACTIVE = "active"
    ACTIVATION_FAILED = "activation_failed"
    DISCONNECTED = "disconnected"
    FROZEN = "frozen"
    UNINSTALLED = "uninstalled"

    ALL = (PENDING, CONNECTING, CONNECTED, ACTIVE, ACTIVATION_FAILED, DISCONNECTED, FROZEN, UNINSTALLED)
    # WhatsApp is linked in these: the session state machine enters them when the gateway reports the
    # session WORKING and leaves them when it drops. YClients refusing the callback does not unlink it.
    LINKED = (CONNECTED, ACTIVE, ACTIVATION_FAILED)
    # The salon ended or paused the installation: its session is not used.
    CLOSED = (FROZEN, UNINSTALLED)


class Company(Base):
    __tablename__ = "companies"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    salon_id: Mapped[int] = mapped_column(BigInteger, unique=True)
    title: Mapped[str | None] = mapped_column(String(255))
    address: Mapped[str | None] = mapped_column(String(255))
    # The salon's IANA time zone: a time YClients sends without an offset is local time there.
    timezone: Mapped[str] = mapped_column(String(64), default=DEFAULT_TIMEZONE, server_default=DEFAULT_TIMEZONE)
    phone: Mapped[str | None] = mapped_column(String(32))
    email: Mapped[str | None] = mapped_column(String(255))
    integration_status: Mapped[str] = mapped_column(String(32), default=IntegrationStatus.PENDING, index=True)
    whatsapp_phone: Mapped[str | None] = mapped_column(String(32))
    whatsapp_connected_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    registered_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    activated_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    disconnected_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    marketplace_user_id: Mapped[int | None] = mapped_column(BigInteger)
    marketplace_user_name: Mapped[str | None] = mapped_column(String(255))
    marketplace_user_phone: Mapped[str | None] = mapped_column(String(32))
    marketplace_user_email: Mapped[str | None] = mapped_column(String(255))
    # The webhook secret is derived from SECRET_KEY, the company id and this generation, so it is
    # never stored; bumping the generation rotates it and None revokes it.
    webhook_secret_generation: Mapped[int | None] = mapped_column(Integer, default=1)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)

    @property
    def whatsapp_connected(self) -> bool:
        """True while WhatsApp is linked: the one rule REST, sockets and the QR endpoint answer by."""
        return self.integration_status in IntegrationStatus.LINKED

    @property
    def zone(self) -> ZoneInfo:
        """The salon's time zone."""
        return ZoneInfo(self.timezone or DEFAULT_TIMEZONE)  # None only before the first flush

    @validates("timezone")
    def _known_zone(self, _key: str, name: str) -> str:
        try:
            ZoneInfo(name)
        except (ZoneInfoNotFoundError, ValueError, TypeError):
            raise ValueError(f"unknown time zone {name!r}") from None
        return name
