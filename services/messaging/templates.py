"""Message texts: the kinds of message, their Russian defaults, placeholders, validation and safe rendering.

A salon may replace the text of any kind. A template is plain text with ``{placeholder}`` fields
from ``PLACEHOLDERS`` (``{{`` and ``}}`` write a literal brace); it is validated when saved, and a
stored template that no longer validates falls back to the default instead of failing a send.
"""

from __future__ import annotations

import string
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from zoneinfo import ZoneInfo


class Kind(StrEnum):
    """What a message is for."""

    BOOKING_CREATED = "booking_created"
    BOOKING_MOVED = "booking_moved"
    BOOKING_CANCELLED = "booking_cancelled"
    REMINDER = "reminder"
    CONFIRMATION_REQUEST = "confirmation_request"
    CONFIRMATION_REASK = "confirmation_reask"
    REPLY_CONFIRMED = "reply_confirmed"
    REPLY_CANCEL_NOTED = "reply_cancel_noted"
    OPT_OUT_ACK = "opt_out_ack"
    OPT_IN_ACK = "opt_in_ack"
    SALON_CANCEL_ALERT = "salon_cancel_alert"


# What each placeholder is (shown to the salon in the template editor).
PLACEHOLDERS: dict[str, str] = {
    "client_name": "имя клиента",
    "salon": "название салона",
    "services": "услуги через запятую",
    "master": "мастер",
    "date": "дата, например «17 сентября»",
    "weekday": "день недели, например «среда»",
    "time": "время, например «15:00»",
    "address": "адрес салона",
    "client_phone": "телефон клиента (для сообщений салону)",
}

DEFAULTS: dict[Kind, str] = {
    Kind.BOOKING_CREATED: (
        "{client_name}, вы записаны в {salon}: {services}, {date} ({weekday}) в {time}. Мастер: {master}.\n"
        "Адрес: {address}"
    ),
    Kind.BOOKING_MOVED: "{client_name}, ваша запись в {salon} перенесена: {services}, {date} ({weekday}) в {time}. "
                        "Мастер: {master}.",
    Kind.BOOKING_CANCELLED: "{client_name}, ваша запись в {salon} на {date} в {time} отменена. "
                            "Будем рады видеть вас снова!",
    Kind.REMINDER: "{client_name}, напоминаем: сегодня в {time} вас ждут в {salon} ({services}). Адрес: {address}",
    Kind.CONFIRMATION_REQUEST: (
        "{client_name}, напоминаем о записи в {salon}: {date} ({weekday}) в {time}, {services}.\n"
        "Ответьте 1, чтобы подтвердить, или 2, если не сможете прийти."
    ),
    Kind.CONFIRMATION_REASK: (
        "{client_name}, вы записаны в {salon} сегодня в {time}. Подтвердите, пожалуйста: "
        "ответьте 1 — приду, 2 — не смогу."
    ),
    Kind.REPLY_CONFIRMED: "Спасибо, {client_name}! Запись на {date} в {time} подтверждена. Ждём вас в {salon}.",
    Kind.REPLY_CANCEL_NOTED: "{client_name}, мы передали салону, что вы не сможете прийти {date} в {time}. "
                             "С вами свяжутся, чтобы подобрать другое время.",
    Kind.OPT_OUT_ACK: "Вы отписались от сообщений {salon}. Чтобы снова получать напоминания, ответьте СТАРТ.",
    Kind.OPT_IN_ACK: "Вы снова будете получать сообщения {salon} о ваших записях.",
    Kind.SALON_CANCEL_ALERT: "Клиент {client_name} ({client_phone}) сообщил, что не придёт: {date} в {time}, "
                             "{services}, мастер {master}.",
}

# Kinds the salon edits and switches on or off; replies and alerts follow from the others.
EDITABLE = (Kind.BOOKING_CREATED, Kind.BOOKING_MOVED, Kind.BOOKING_CANCELLED, Kind.REMINDER,
            Kind.CONFIRMATION_REQUEST, Kind.CONFIRMATION_REASK, Kind.REPLY_CONFIRMED, Kind.REPLY_CANCEL_NOTED,
            Kind.SALON_CANCEL_ALERT)
MAX_LENGTH = 1000

MONTHS = ("января", "февраля", "марта", "апреля", "мая", "июня", "июля", "августа", "сентября", "октября",
          "ноября", "декабря")
WEEKDAYS = ("понедельник", "вторник", "среда", "четверг", "пятница", "суббота", "воскресенье")


class TemplateError(ValueError):
    """A template that cannot be saved; ``str(exc)`` is the message for the salon (Russian)."""


def validate(text: object) -> str:
    """The template if it can be saved, else ``TemplateError`` naming the problem."""
    if not isinstance(text, str) or not text.strip():
        raise TemplateError("Текст сообщения не может быть пустым")
    if len(text) > MAX_LENGTH:
        raise TemplateError(f"Текст длиннее {MAX_LENGTH} символов")
    if any(ch < " " and ch not in "\n\t" for ch in text) or "\x7f" in text:
        raise TemplateError("Текст содержит управляющие символы")
    try:
        fields = list(string.Formatter().parse(text))
    except ValueError:
        raise TemplateError("Непарная фигурная скобка: для скобки в тексте напишите {{ или }}") from None
    for _literal, name, spec, conversion in fields:
        if name is None:
            continue
        if name not in PLACEHOLDERS:
            known = ", ".join("{" + p + "}" for p in PLACEHOLDERS)
            raise TemplateError(f"Неизвестная подстановка {{{name}}}. Можно использовать: {known}")
        if spec or conversion:
            raise TemplateError(f"Подстановка {{{name}}} пишется без двоеточия и восклицательного знака")
    return text


@dataclass(frozen=True)
class Context:
    """What a message is about, for its placeholders."""

    client_name: str | None
    salon: str | None
    services: tuple[str, ...]
    master: str | None
    starts_at: datetime | None
    timezone: str
    address: str | None
    client_phone: str | None = None

    def values(self) -> dict[str, str]:
        """Every placeholder's text (times in the salon's time zone)."""
        local = self.starts_at.astimezone(ZoneInfo(self.timezone)) if self.starts_at else None
        return {
            "client_name": self.client_name or "Здравствуйте",
            "salon": self.salon or "салон",
            "services": ", ".join(self.services) or "визит",
            "master": self.master or "уточняется",
            "date": f"{local.day} {MONTHS[local.month - 1]}" if local else "",
            "weekday": WEEKDAYS[local.weekday()] if local else "",
            "time": local.strftime("%H:%M") if local else "",
            "address": self.address or "",
            "client_phone": self.client_phone or "",
        }


def render(template: str | None, kind: Kind, context: Context) -> str:
    """The text to send: the salon's template, or the default when it has none (or it no longer validates)."""
    text = template if template is not None else DEFAULTS[kind]
    try:
        validate(text)
    except TemplateError:
        text = DEFAULTS[kind]
    values = context.values()
    # Only the known names are looked up, so a template can reach nothing but these strings.
    return "".join(literal + (values[name] if name else "") for literal, name, _s, _c in string.Formatter().parse(text))
