"""The one date format on the wire: ISO 8601 in UTC with a ``Z``, to the second, as the reference writes dates."""

from __future__ import annotations

from datetime import UTC, datetime


def iso(moment: datetime | None) -> str | None:
    """``2024-09-16T12:00:00Z`` (None stays None)."""
    if moment is None:
        return None
    return moment.astimezone(UTC).replace(microsecond=0).isoformat().replace("+00:00", "Z")
