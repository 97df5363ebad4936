"""The per-number pacer in Redis: a booked send names the gap until the number's next one, which the
dispatcher waits for instead of coming back after the minimum gap only to find it too soon."""

from __future__ import annotations

import random
from zoneinfo import ZoneInfo

from services.messaging import pacing

MOSCOW = ZoneInfo("Europe/Moscow")


def test_a_booked_send_names_the_jittered_gap_and_the_number_is_free_again_after_it(ctx):
    company_id = random.randint(10**8, 10**9)
    low, high = (pacing.min_gap() * bound for bound in pacing.JITTER)
    first = pacing.reserve(company_id, MOSCOW)
    assert first.booked and low <= first.gap_seconds <= high
    too_soon = pacing.reserve(company_id, MOSCOW)
    assert not too_soon.booked and 0 < too_soon.wait_seconds <= first.gap_seconds
    # What the dispatcher does: come back after the gap (here: a send planned that far ahead).
    again = pacing.reserve(company_id, MOSCOW, lead=first.gap_seconds + 0.01)
    assert again.booked and low <= again.gap_seconds <= high
