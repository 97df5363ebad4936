"""A message to a salon's client (or to the salon), from planned to read, under one idempotency key."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import ForeignKey, Index, Integer, SmallInteger, String, Text, text
from sqlalchemy.orm import Mapped, mapped_column

from models.db import Base, UTCDateTime, utcnow


class MessageState:
    """``planned → queued → sending → sent → delivered → read``; ``failed``, ``skipped``, ``expired``."""

    PLANNED = "planned"
    QUEUED = "queued"
    SENDING = "sending"
    SENT = "sent"
    DELIVERED = "delivered"
    READ = "read"
    FAILED = "failed"
    SKIPPED = "skipped"
    EXPIRED = "expired"

    ALL = (PLANNED, QUEUED, SENDING, SENT, DELIVERED, READ, FAILED, SKIPPED, EXPIRED)
    # Waiting to be sent: what the due query looks at.
    WAITING = (PLANNED, QUEUED)
    # Went out: what receipts advance and replies are matched against.
    OUT = (SENT, DELIVERED, READ)
    # Never changes again.
    FINAL = (READ, FAILED, SKIPPED, EXPIRED)


class Message(Base):
    __tablename__ = "messages"
    __table_args__ = (
        # The due query: waiting messages by due time, nothing else scanned.
        Index("ix_messages_waiting_due", "due_at", postgresql_where=text("state IN ('planned', 'queued')"),
              sqlite_where=text("state IN ('planned', 'queued')")),
        Index("ix_messages_company_created", "company_id", "id"),
        Index("ix_messages_booking", "booking_id"),
        Index("ix_messages_gateway_id", "gateway_message_id"),
        # Salons with work queued, and sends whose worker may have died: both small sets, both each tick.
        Index("ix_messages_queued", "company_id", postgresql_where=text("state = 'queued'"),
              sqlite_where=text("state = 'queued'")),
        Index("ix_messages_sending", "sending_at", postgresql_where=text("state = 'sending'"),
              sqlite_where=text("state = 'sending'")),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    company_id: Mapped[int] = mapped_column(ForeignKey("companies.id", ondelete="CASCADE"))
    booking_id: Mapped[int | None] = mapped_column(ForeignKey("bookings.id", ondelete="SET NULL"))
    # E.164; a booking's client, or the salon's own contact phone for alerts.
    phone: Mapped[str] = mapped_column(String(32))
    kind: Mapped[str] = mapped_column(String(32))
    # What makes this message one of its kind: the visit time a reminder is for, the change a move
    # announcement is for ("" for once-per-booking kinds).
    slot: Mapped[str] = mapped_column(String(100), default="")
    # company:booking:kind:slot — a retried task, a replayed webhook or a second worker finds it taken.
    idempotency_key: Mapped[str] = mapped_column(String(200), unique=True)
    state: Mapped[str] = mapped_column(String(16), default=MessageState.PLANNED)
    priority: Mapped[int] = mapped_column(SmallInteger, default=1)
    due_at: Mapped[datetime] = mapped_column(UTCDateTime)
    # Not worth sending after this (the visit started); a waiting message past it expires.
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime)
    text: Mapped[str | None] = mapped_column(Text)
    gateway_message_id: Mapped[str | None] = mapped_column(String(128))
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    # Why it was skipped, failed or expired (a short code such as ``opted_out`` plus detail).
    reason: Mapped[str | None] = mapped_column(String(255))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)
    # Real time (not the scheduling clock): when the send began (typing shown), and when the text
    # was handed to the gateway. Handed but not sent = outcome unknown: never sent again blindly.
    sending_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    handed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    sent_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    delivered_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    read_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
