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


def test_a_send_whose_slot_opens_within_the_longest_typing_time_is_booked_at_that_slot(make_app):
    # Typing may last longer than one jittered gap here (at most 1.6 × 15 s), not than two.
    with make_app(whatsapp_typing_max_seconds=30.0).app_context():
        company_id = random.randint(10**8, 10**9)
        first = pacing.reserve(company_id, MOSCOW)
        # A short text typed before the slot opens: booked at the slot, typing shown until then.
        short = pacing.reserve(company_id, MOSCOW, lead=1.0)
        assert short.booked and first.gap_seconds - 0.05 <= short.lead_seconds <= first.gap_seconds
        # The slot after it is further away than the longest typing time: not booked, the wait is exact.
        later = pacing.reserve(company_id, MOSCOW, lead=1.0)
        assert not later.booked
        assert 0 <= short.lead_seconds + short.gap_seconds - 1.0 - later.wait_seconds < 0.05
