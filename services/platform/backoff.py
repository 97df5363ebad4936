"""The one retry curve: capped exponential backoff with jitter."""

from __future__ import annotations

import random

# Past this many doublings every realistic cap is reached; it also keeps 2**n a small number.
_MAX_DOUBLINGS = 32


def backoff(attempt: int, base: float, cap: float) -> float:
    """Seconds to wait before retry number ``attempt`` (1, 2, …): the step ``base·2^(attempt−1)``,
    capped at ``cap``, half of it fixed and half random ("equal jitter"), so retries of many
    failures spread out instead of arriving together."""
    step = min(cap, base * 2 ** min(max(attempt, 1) - 1, _MAX_DOUBLINGS))
    return step / 2 + random.uniform(0, step / 2)
