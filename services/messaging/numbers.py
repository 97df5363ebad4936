"""Whether a phone number is on WhatsApp, asked of the gateway before the first message to it and kept.

The answer is kept in Redis per salon and number (a month when it exists, a day when it does not,
so a client who installs WhatsApp later is tried again).
"""

from __future__ import annotations

from services.platform import runtime
from services.whatsapp.gateway import gateway

KNOWN_TTL = 30 * 24 * 3600
UNKNOWN_TTL = 24 * 3600


def exists(company_id: int, session: str, digits: str) -> bool:
    """The gateway's answer for ``digits`` (cached); raises GatewayError when it cannot say."""
    key = runtime.settings().key("wa_number", company_id, digits)
    client = runtime.redis()
    cached = client.get(key)
    if cached is not None:
        return cached == b"1"
    found = gateway().number_exists(session, digits)
    client.set(key, "1" if found else "0", ex=KNOWN_TTL if found else UNKNOWN_TTL)
    return found
