"""A client who answered «СТОП»: no message of that salon goes to that phone until «СТАРТ»."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import ForeignKey, String
from sqlalchemy.orm import Mapped, mapped_column

from models.db import Base, UTCDateTime, utcnow


class OptOut(Base):
    __tablename__ = "opt_outs"

    company_id: Mapped[int] = mapped_column(ForeignKey("companies.id", ondelete="CASCADE"), primary_key=True)
    phone: Mapped[str] = mapped_column(String(32), primary_key=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
