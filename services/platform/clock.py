"""The one clock of scheduled work (reminders, quiet hours, due messages).

``now()`` is the real time in production. Under ``APP_ENV=test`` a test may set the time for every
process of the run at once (the web app, workers, beat) through Redis with ``set_test_time``, so
scheduling is tested by moving the clock rather than by sleeping; a clock that was never set runs
in real time.
"""

from __future__ import annotations

from datetime import UTC, datetime

from models import utcnow
from services.platform import runtime

_KEY = ("clock", "test_now")


def now() -> datetime:
    """The current time, timezone-aware in UTC."""
    settings = runtime.settings()
    if settings.app_env == "test":
        raw = runtime.redis().get(settings.key(*_KEY))
        if raw is not None:
            return datetime.fromtimestamp(float(raw), UTC)  # type: ignore[arg-type]
    return utcnow()


def set_test_time(moment: datetime | None) -> None:
    """Test runs only: every process's ``now()`` answers ``moment`` (None: real time again)."""
    settings = runtime.settings()
    if settings.app_env != "test":
        raise RuntimeError("the clock can be set in test runs only")
    key = settings.key(*_KEY)
    if moment is None:
        runtime.redis().delete(key)
    else:
        runtime.redis().set(key, repr(moment.timestamp()))
