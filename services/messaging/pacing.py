"""Pacing per connected number, shared by every worker through Redis: what keeps a salon's number unbanned.

At most ``WHATSAPP_MAX_PER_MINUTE`` messages a minute per number, as a minimum gap between two
sends stretched by a random part (so sends never tick like a machine), and at most
``WHATSAPP_DAILY_CAP`` a day (the salon's local day). One Lua script checks and books a send
atomically, so two workers can never take the same gap. A send is booked after its typing time,
or later, when the number's slot opens within the longest typing time: "typing…" then shows until
the slot (as WhatsApp shows it until the text comes), instead of a dispatcher coming back for it.
Pacing uses real seconds, not the scheduling clock: it is about how WhatsApp sees the number.
"""

from __future__ import annotations

import random
import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from services.platform import runtime

# KEYS: next-allowed time, today's count. ARGV: the send's time, gap, daily cap, count TTL, the latest
# time it may be booked at. Returns {1, time booked}; {0, seconds too soon}; {-1, 0} the day's cap is reached.
_RESERVE = """
local at = tonumber(ARGV[1])
local next_at = tonumber(redis.call('GET', KEYS[1]) or '0')
if at < next_at then
  if next_at > tonumber(ARGV[5]) then return {0, tostring(next_at - at)} end
  at = next_at
end
local sent = tonumber(redis.call('GET', KEYS[2]) or '0')
if sent >= tonumber(ARGV[3]) then return {-1, '0'} end
redis.call('SET', KEYS[1], tostring(at + tonumber(ARGV[2])), 'EX', 86400)
redis.call('INCR', KEYS[2])
redis.call('EXPIRE', KEYS[2], tonumber(ARGV[4]))
return {1, tostring(at)}
"""
# KEYS: when the number last handed a text to the gateway. ARGV: now, minimum gap.
# Returns 0 (and records now) when the gap has passed, else the seconds still to wait.
_HOLD = """
local now = tonumber(ARGV[1])
local last = tonumber(redis.call('GET', KEYS[1]) or '0')
local wait = last + tonumber(ARGV[2]) - now
if wait > 0 then return tostring(wait) end
redis.call('SET', KEYS[1], tostring(now), 'EX', 86400)
return '0'
"""
JITTER = (1.0, 1.6)


@dataclass(frozen=True)
class Slot:
    """The pacer's answer: ``booked`` (``lead_seconds`` from now, with the gap drawn until the number's next
    send), or how long to wait (``until_tomorrow`` when the day's cap is reached)."""

    booked: bool
    wait_seconds: float = 0.0
    until_tomorrow: bool = False
    gap_seconds: float = 0.0
    lead_seconds: float = 0.0


def min_gap() -> float:
    """The shortest gap between two sends from one number."""
    return 60.0 / runtime.settings().whatsapp_max_per_minute


def _seconds_to_local_midnight(zone: ZoneInfo, now: float) -> float:
    local = datetime.fromtimestamp(now, zone)
    midnight = datetime.combine(local.date() + timedelta(days=1), datetime.min.time(), tzinfo=zone)
    return max(1.0, midnight.timestamp() - now)


def reserve(company_id: int, zone: ZoneInfo, lead: float = 0.0) -> Slot:
    """Book a send ``lead`` seconds from now (after typing), or at the number's next slot if it opens within
    the longest typing time; else say how long to wait."""
    settings = runtime.settings()
    now = time.time()
    at = now + lead
    day = datetime.fromtimestamp(at, zone).date().isoformat()
    gap = min_gap() * random.uniform(*JITTER)
    latest = now + max(lead, settings.whatsapp_typing_max_seconds)
    keys = [settings.key("pace", company_id, "next"), settings.key("pace", company_id, "day", day)]
    script = runtime.redis().register_script(_RESERVE)
    outcome, detail = script(keys=keys, args=[repr(at), repr(gap), settings.whatsapp_daily_cap, 2 * 86400,
                                              repr(latest)])
    if int(outcome) == 1:
        return Slot(True, gap_seconds=gap, lead_seconds=float(detail) - now)
    if int(outcome) == -1:
        return Slot(False, _seconds_to_local_midnight(zone, at), until_tomorrow=True)
    return Slot(False, float(detail))


def hold(company_id: int) -> float:
    """At the moment of sending: 0 (and the send recorded) when the number's last send is a minimum gap
    ago, else the seconds to wait. ``reserve`` plans the gaps; this keeps them when tasks run late."""
    key = runtime.settings().key("pace", company_id, "last")
    script = runtime.redis().register_script(_HOLD)
    return float(script(keys=[key], args=[repr(time.time()), repr(min_gap())]))


def sent(company_id: int) -> None:
    """After a send: the gap to the next one counts from now, when the gateway has the text (a slow answer
    must not let the next one follow closer than the minimum)."""
    runtime.redis().set(runtime.settings().key("pace", company_id, "last"), repr(time.time()), ex=86400)


def typing_seconds(text: str) -> float:
    """How long "typing…" shows before a text goes: proportional to its length, within bounds."""
    settings = runtime.settings()
    seconds = len(text) * settings.whatsapp_typing_ms_per_char / 1000
    return min(settings.whatsapp_typing_max_seconds, seconds)
