"""The local mirror of a YClients client, kept from webhooks."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import BigInteger, ForeignKey, Integer, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from models.db import Base, JSONType, UTCDateTime, utcnow


class Client(Base):
    __tablename__ = "clients"
    __table_args__ = (UniqueConstraint("company_id", "client_id", name="uq_clients_company_client"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    company_id: Mapped[int] = mapped_column(ForeignKey("companies.id", ondelete="CASCADE"))
    # The client's id in YClients (our own id is ``id``, which bookings link to).
    client_id: Mapped[int] = mapped_column(BigInteger)
    name: Mapped[str | None] = mapped_column(String(255))
    # E.164 (services.phones.normalise_phone); None when YClients' value is no valid number (kept in data).
    phone: Mapped[str | None] = mapped_column(String(32))
    data: Mapped[Any] = mapped_column(JSONType, nullable=True)
    version_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    last_event_id: Mapped[int | None] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)
