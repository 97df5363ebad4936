"""The webhook inbox: every delivery stored before it is acknowledged, processed by tasks."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import ForeignKey, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from models.db import Base, JSONType, UTCDateTime, utcnow


class EventStatus:
    """``received → processing → processed | failed → dead``; ``rejected`` is never processed."""

    RECEIVED = "received"
    PROCESSING = "processing"
    PROCESSED = "processed"
    FAILED = "failed"
    DEAD = "dead"
    REJECTED = "rejected"

    ALL = (RECEIVED, PROCESSING, PROCESSED, FAILED, DEAD, REJECTED)


class EventSource:
    """Where a delivery came from."""

    REFERENCE = "reference"
    YCLIENTS = "yclients"
    LIFECYCLE = "lifecycle"
    GATEWAY = "gateway"


class WebhookEvent(Base):
    __tablename__ = "webhook_events"
    __table_args__ = (Index("ix_webhook_events_status_received_at", "status", "received_at"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    company_id: Mapped[int | None] = mapped_column(ForeignKey("companies.id", ondelete="SET NULL"), index=True)
    source: Mapped[str] = mapped_column(String(16))
    dedupe_key: Mapped[str] = mapped_column(String(128), unique=True)
    type: Mapped[str] = mapped_column(String(64))
    payload: Mapped[Any] = mapped_column(JSONType, nullable=True)
    status: Mapped[str] = mapped_column(String(16), default=EventStatus.RECEIVED)
    reject_reason: Mapped[str | None] = mapped_column(String(255))
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    last_error: Mapped[str | None] = mapped_column(Text)
    request_id: Mapped[str | None] = mapped_column(String(64))
    received_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    processed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # When a worker should next run the event: end of the claim's lease while ``processing``,
    # the retry time while ``failed``; the sweep re-enqueues events past it.
    next_attempt_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
