"""Checking the YClients install redirect: ``user_data`` signed with our partner token.

Signature = hex(HMAC-SHA256(key=partner_token, msg=base64_decode(user_data))), compared in
constant time. The signature covers the user, not the salon (``salon_id`` travels beside it) and
carries no timestamp, so a repeat of the same link cannot be told from a replay. Our rule: the
first use binds a signature to its salon in Redis for ``INSTALL_REPLAY_TTL_SECONDS``; the same
link for the same salon keeps working (a refresh, the back button, a second visit), while the same
signature presented for any other salon is refused. Re-using it for its own salon gains nothing
beyond what the link already gave.

Because the salon is not signed, a signature is never enough on its own: registration asks YClients
whether our application is installed in that salon, and a signature for a salon that is already
registered yields only its connect page (``services.companies.registration``).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
from dataclasses import dataclass
from typing import Any

from services.platform import json_input, runtime
from services.platform.errors import Forbidden
from services.platform.ids import MAX_BIG_ID, as_id
from services.platform.text import single_line

BAD_SIGNATURE = "Неверная подпись YClients"
MISSING_SIGNATURE = "Отсутствует подпись YClients (user_data, user_data_sign)"
NOT_CONFIGURED = "Проверка подписи YClients невозможна: YCLIENTS_PARTNER_TOKEN не настроен"
SIGNATURE_REUSED = "Эта подпись YClients уже использована для другого салона"


@dataclass(frozen=True)
class MarketplaceUser:
    """The YClients user who installs the app (decoded ``user_data``)."""

    id: int | None
    name: str | None
    phone: str | None
    email: str | None
    salon_name: str | None
    signature: str

    @classmethod
    def from_json(cls, data: dict[str, Any], signature: str) -> MarketplaceUser:
        """The user of decoded ``user_data``; each field one line within its column's length."""
        name, phone, email, salon_name = (
            single_line(data.get(field), length)
            for field, length in (("name", 255), ("phone", 32), ("email", 255), ("salon_name", 255))
        )
        return cls(as_id(data.get("id"), MAX_BIG_ID), name, phone, email, salon_name, signature)


def _b64decode(value: str) -> bytes:
    """Standard or url-safe base64, padded or not."""
    cleaned = value.strip().replace("-", "+").replace("_", "/").replace(" ", "+")
    cleaned += "=" * (-len(cleaned) % 4)
    return base64.b64decode(cleaned, validate=True)


def sign_user_data(decoded: bytes, partner_token: str) -> str:
    """The signature YClients computes for ``decoded`` user data."""
    return hmac.new(partner_token.encode(), decoded, hashlib.sha256).hexdigest()


def verify_user_data(user_data: str | None, signature: str | None) -> MarketplaceUser:
    """The signed user, or ``Forbidden`` for a missing, malformed or wrong signature."""
    partner_token = runtime.settings().yclients_partner_token
    if not user_data or not signature:
        raise Forbidden(MISSING_SIGNATURE)
    if not partner_token:
        raise Forbidden(NOT_CONFIGURED)
    try:
        decoded = _b64decode(user_data)
    except (binascii.Error, ValueError):
        raise Forbidden(BAD_SIGNATURE) from None
    expected = sign_user_data(decoded, partner_token)
    if not hmac.compare_digest(expected.encode(), signature.strip().lower().encode()):
        raise Forbidden(BAD_SIGNATURE)
    try:
        data = json_input.load(decoded, max_bytes=len(decoded))
    except json_input.JsonRejected:
        data = None
    return MarketplaceUser.from_json(data if isinstance(data, dict) else {}, signature.strip().lower())


def bind_signature(signature: str, salon_id: int) -> None:
    """Tie a signature to the salon it was first used for; refuse it for any other salon."""
    settings = runtime.settings()
    key = settings.key("install", "signature", hashlib.sha256(signature.encode()).hexdigest()[:40])
    client = runtime.redis()
    if client.set(key, str(salon_id), nx=True, ex=settings.install_replay_ttl_seconds):
        return
    bound = client.get(key)
    if bound is not None and int(bound) != salon_id:  # type: ignore[arg-type]
        raise Forbidden(SIGNATURE_REUSED)
