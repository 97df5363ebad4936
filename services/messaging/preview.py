"""Rendering a template as a client would receive it: against one of the salon's bookings, or a sample."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from sqlalchemy import select

from models import Booking, Client, Company, db
from services.messaging.settings import settings_row
from services.messaging.templates import EDITABLE, Context, Kind, TemplateError, render, validate
from services.platform import clock
from services.platform.errors import InvalidInput, NotFound

SAMPLE_CLIENT, SAMPLE_SERVICES, SAMPLE_MASTER = "Анна", ("Стрижка", "Укладка"), "Ольга"


def _sample(company: Company) -> Context:
    starts = (clock.now() + timedelta(days=1)).astimezone(company.zone).replace(hour=15, minute=0, second=0,
                                                                                  microsecond=0)
    return Context(SAMPLE_CLIENT, company.title, SAMPLE_SERVICES, SAMPLE_MASTER, starts, company.timezone,
                   company.address, "+79001234567")


def _booking_context(company: Company, booking: Booking) -> Context:
    client = db.session.get(Client, booking.client_id) if booking.client_id else None
    return Context(client.name if client else None, company.title, tuple(booking.services or ()), booking.staff_name,
                   booking.starts_at, company.timezone, company.address, client.phone if client else None)


def _context(company: Company, booking_id: Any = None) -> tuple[Context, int | None]:
    """The booking a preview is rendered against (the named one, else the next upcoming one) and its id;
    a sample and None when the salon has none."""
    if booking_id is not None:
        booking = db.session.scalar(select(Booking).where(Booking.company_id == company.id, Booking.id == booking_id))
        if booking is None:
            raise NotFound("Запись не найдена")
    else:
        booking = db.session.scalars(
            select(Booking).where(Booking.company_id == company.id, Booking.starts_at > clock.now(),
                                  Booking.status != "cancelled").order_by(Booking.starts_at).limit(1)
        ).first()
    return (_booking_context(company, booking), booking.id) if booking else (_sample(company), None)


def preview(company: Company, kind: Any, template: Any = None, booking_id: Any = None) -> dict[str, Any]:
    """``{"text", "booking_id"}``: ``template`` (or the salon's own, or the default) rendered; the next
    upcoming booking is used when none is named, a sample when the salon has none."""
    if not isinstance(kind, str) or kind not in {k.value for k in EDITABLE}:
        raise InvalidInput("kind: неизвестный вид сообщения", errors={"kind": "Неизвестный вид сообщения"})
    if template is not None:
        try:
            validate(template)
        except TemplateError as exc:
            raise InvalidInput(str(exc), errors={"template": str(exc)}) from None
    else:
        template = (settings_row(company.id).templates or {}).get(kind)
    context, used = _context(company, booking_id)
    return {"text": render(template, Kind(kind), context), "booking_id": used}


def previews(company: Company) -> dict[str, str]:
    """Every editable kind's saved template (or default) rendered against the same next booking, looked up once."""
    templates = settings_row(company.id).templates or {}
    context, _used = _context(company)
    return {kind.value: render(templates.get(kind.value), kind, context) for kind in EDITABLE}
