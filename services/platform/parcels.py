"""Task inputs that must not travel in task arguments (phone numbers, gateway payloads).

Task arguments are shown in Flower and kept in the broker, so they carry ids only: a payload is
parked in Redis under a random id (expiring after a day) and the task fetches it by that id.
"""

from __future__ import annotations

import json
import uuid
from typing import Any

from services.platform import runtime

TTL_SECONDS = 24 * 3600


def park(data: Any) -> str:
    """Store ``data`` and return the id a task takes instead of it."""
    parcel_id = uuid.uuid4().hex
    runtime.redis().set(runtime.settings().key("parcel", parcel_id), json.dumps(data), ex=TTL_SECONDS)
    return parcel_id


def fetch(parcel_id: str) -> Any | None:
    """The parked data (kept until it expires, so a retried task finds it again); None once gone."""
    raw = runtime.redis().get(runtime.settings().key("parcel", parcel_id))
    return None if raw is None else json.loads(raw)  # type: ignore[arg-type]
