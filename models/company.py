"""A salon that installed the integration."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from models.db import Base, UTCDateTime, utcnow


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
