"""A salon's messaging settings: which messages go, reminder times, quiet hours, templates, contact phone."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Boolean, ForeignKey, String
from sqlalchemy.orm import Mapped, mapped_column

from models.db import Base, JSONType, UTCDateTime, utcnow


class MessagingSettings(Base):
    __tablename__ = "messaging_settings"

    company_id: Mapped[int] = mapped_column(ForeignKey("companies.id", ondelete="CASCADE"), primary_key=True)
    # Kinds switched off (new kinds are on until a salon switches them off).
    disabled_kinds: Mapped[list[str]] = mapped_column(JSONType, default=list)
    # [{"id", "kind", "hours_before"} | {"id", "kind", "day_before_at": "HH:MM"}]; None = the defaults.
    reminders: Mapped[list[dict[str, Any]] | None] = mapped_column(JSONType)
    # None switches the re-ask or the quiet hours off; the defaults are settings_row's, never a column's
    # (a column default would turn a new row's "off" back on at INSERT).
    reask_at: Mapped[str | None] = mapped_column(String(5))
    quiet_start: Mapped[str | None] = mapped_column(String(5))
    quiet_end: Mapped[str | None] = mapped_column(String(5))
    # {kind: text} for the kinds the salon rewrote.
    templates: Mapped[dict[str, str]] = mapped_column(JSONType, default=dict)
    # E.164: where "the client will not come" alerts go.
    contact_phone: Mapped[str | None] = mapped_column(String(32))
    # Write attendance -1 to YClients when a client answers that they will not come.
    cancel_writes_attendance: Mapped[bool] = mapped_column(Boolean, default=False)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)
