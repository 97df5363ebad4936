"""The salon's WhatsApp linked-device session as the gateway reports it."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import ForeignKey, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from models.db import Base, UTCDateTime, utcnow


class SessionStatus:
    """WAHA's session states (DESIGN.md §5)."""

    STOPPED = "STOPPED"
    STARTING = "STARTING"
    SCAN_QR_CODE = "SCAN_QR_CODE"
    WORKING = "WORKING"
    FAILED = "FAILED"

    ALL = (STOPPED, STARTING, SCAN_QR_CODE, WORKING, FAILED)


class WhatsAppSession(Base):
    __tablename__ = "whatsapp_sessions"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    company_id: Mapped[int] = mapped_column(ForeignKey("companies.id", ondelete="CASCADE"), unique=True)
    status: Mapped[str] = mapped_column(String(16), default=SessionStatus.STOPPED)
    gateway_session: Mapped[str] = mapped_column(String(64))
    attempt: Mapped[int] = mapped_column(Integer, default=0)
    qr_count: Mapped[int] = mapped_column(Integer, default=0)
    last_qr_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    qr_expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    pairing_phone: Mapped[str | None] = mapped_column(String(32))
    me_phone: Mapped[str | None] = mapped_column(String(32))
    failure_reason: Mapped[str | None] = mapped_column(String(64))
    last_disconnect_code: Mapped[int | None] = mapped_column(Integer)
    reconnect_attempts: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)
