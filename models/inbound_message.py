"""A message a client sent to the salon's WhatsApp, and what the service made of it."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import ForeignKey, Index, Integer, String, Text, UniqueConstraint, text
from sqlalchemy.orm import Mapped, mapped_column

from models.db import Base, UTCDateTime, utcnow


class ReplyWrite:
    """The YClients attendance write a reply asked for: ``pending → done``, or ``failed`` (reported)."""

    NONE = "none"
    PENDING = "pending"
    DONE = "done"
    FAILED = "failed"


class InboundMessage(Base):
    __tablename__ = "inbound_messages"
    __table_args__ = (
        UniqueConstraint("company_id", "gateway_message_id", name="uq_inbound_messages_company_gateway_id"),
        Index("ix_inbound_messages_company_received", "company_id", "id"),
        # Writes whose task may have been lost: a small set, looked at each messaging tick.
        Index("ix_inbound_messages_pending_write", "write_after", postgresql_where=text("yclients_write = 'pending'"),
              sqlite_where=text("yclients_write = 'pending'")),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    company_id: Mapped[int] = mapped_column(ForeignKey("companies.id", ondelete="CASCADE"))
    gateway_message_id: Mapped[str] = mapped_column(String(128))
    phone: Mapped[str] = mapped_column(String(32))
    text: Mapped[str] = mapped_column(Text)
    received_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    # confirm, cancel, stop, start or other (services.messaging.replies.Meaning)
    meaning: Mapped[str] = mapped_column(String(16))
    # The confirmation request it answered and that message's booking, when it answered one.
    message_id: Mapped[int | None] = mapped_column(ForeignKey("messages.id", ondelete="SET NULL"))
    booking_id: Mapped[int | None] = mapped_column(ForeignKey("bookings.id", ondelete="SET NULL"))
    yclients_write: Mapped[str] = mapped_column(String(16), default=ReplyWrite.NONE)
    write_attempts: Mapped[int] = mapped_column(Integer, default=0)
    # While the write is pending: when its next attempt is due (or the running one should have ended).
    write_after: Mapped[datetime | None] = mapped_column(UTCDateTime)
    error: Mapped[str | None] = mapped_column(Text)
