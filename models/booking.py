"""The local mirror of a YClients booking (record), kept from webhooks."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import BigInteger, ForeignKey, Integer, SmallInteger, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from models.db import Base, JSONType, UTCDateTime, utcnow


class Booking(Base):
    __tablename__ = "bookings"
    __table_args__ = (UniqueConstraint("company_id", "record_id", name="uq_bookings_company_record"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    company_id: Mapped[int] = mapped_column(ForeignKey("companies.id", ondelete="CASCADE"))
    record_id: Mapped[int] = mapped_column(BigInteger)
    status: Mapped[str] = mapped_column(String(16), default="active")
    # Read from the merged payload (services.webhooks.records): times in UTC, services sorted by title.
    starts_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    ends_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    staff_id: Mapped[int | None] = mapped_column(BigInteger)
    staff_name: Mapped[str | None] = mapped_column(String(255))
    services: Mapped[list[str] | None] = mapped_column(JSONType)
    # YClients' attendance: 2 confirmed, 1 came, 0 waiting, -1 no-show.
    attendance: Mapped[int | None] = mapped_column(SmallInteger)
    # Our clients row (its YClients id is Client.client_id); None when the record names no client.
    client_id: Mapped[int | None] = mapped_column(ForeignKey("clients.id", ondelete="SET NULL"), index=True)
    data: Mapped[Any] = mapped_column(JSONType, nullable=True)
    # Ordering key of the newest applied event; an older one never overwrites a newer one.
    version_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    last_event_id: Mapped[int | None] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)
