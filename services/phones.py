"""Phone numbers, in one place: parsing what people type, the forms we store and send, masking for logs.

Input may be Russian (``8 900 123-45-67``, ``9001234567``) or international (``+44 20 7946 0958``);
it is parsed with ``phonenumbers`` (Google's libphonenumber metadata) with Russia as the default
region and must be a valid number. We store E.164 (``+79001234567``) and give WhatsApp gateways the
digits form (``79001234567``, which they turn into ``79001234567@c.us``).
"""

from __future__ import annotations

import re

import phonenumbers

from services.platform.errors import InvalidInput

DEFAULT_REGION = "RU"
BAD_PHONE = "Некорректный номер телефона: нужно от 10 до 15 цифр"
MAX_INPUT_LENGTH = 32
# What people put between digits; anything else (letters, control characters) makes the input invalid.
_ALLOWED = re.compile(r"^\+?[\d\s().\-]+$")


def parse_phone(value: object) -> str:
    """The E.164 form (``+79001234567``) of a typed phone number; ``InvalidInput`` for anything else."""
    if not isinstance(value, str) or len(value) > MAX_INPUT_LENGTH:
        raise InvalidInput(BAD_PHONE)
    text = value.strip()
    if not text.isascii() or not _ALLOWED.match(text):
        raise InvalidInput(BAD_PHONE)
    digits = re.sub(r"\D", "", text)
    if not 10 <= len(digits) <= 15:
        raise InvalidInput(BAD_PHONE)
    try:
        number = phonenumbers.parse(text, DEFAULT_REGION)
    except phonenumbers.NumberParseException:
        raise InvalidInput(BAD_PHONE) from None
    if not phonenumbers.is_valid_number(number):
        raise InvalidInput(BAD_PHONE)
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


def normalise_phone(value: object) -> str | None:
    """E.164 for data from elsewhere (YClients, a gateway): None instead of an error when it is no number."""
    try:
        return parse_phone(value)
    except InvalidInput:
        return None


def whatsapp_digits(e164: str) -> str:
    """The digits form gateways take (``+79001234567`` → ``79001234567``)."""
    return e164.removeprefix("+")


def from_whatsapp_id(chat_id: object) -> str | None:
    """E.164 from a WhatsApp id (``79001234567@c.us``, ``79001234567:12@s.whatsapp.net``); None for groups
    and ids that carry no phone number (``…@lid``, ``…@g.us``)."""
    if not isinstance(chat_id, str):
        return None
    user, _, server = chat_id.partition("@")
    if server not in ("", "c.us", "s.whatsapp.net"):
        return None
    digits = user.split(":", 1)[0]
    if not digits.isascii() or not digits.isdigit():
        return None
    return normalise_phone("+" + digits)


def mask_phone(value: str) -> str:
    """``+79001234567`` → ``+7900*****67``: enough to tell numbers apart in a log, not to call one."""
    digits = re.sub(r"\D", "", value)
    if len(digits) < 7:
        return "*" * len(value)
    return "+" + digits[:4] + "*" * (len(digits) - 6) + digits[-2:]
