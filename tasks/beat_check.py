"""Beat's health check for compose: exits 0 while beat's heartbeat is fresh, 1 otherwise."""

from __future__ import annotations

import sys
import time

import redis

from services.platform.health import BEAT_STALE_AFTER
from services.platform.settings import get_settings


def main() -> int:
    """Read the heartbeat beat's schedule keeps writing (``health.beat_heartbeat``)."""
    settings = get_settings()
    raw = redis.Redis.from_url(settings.redis_url, socket_timeout=5).get(settings.key("beat", "heartbeat"))
    if raw is None:
        print("no beat heartbeat yet", file=sys.stderr)
        return 1
    age = time.time() - float(raw)  # type: ignore[arg-type]
    print(f"beat heartbeat {age:.0f}s ago")
    return 0 if age < BEAT_STALE_AFTER else 1


if __name__ == "__main__":
    sys.exit(main())
