"""What the HTTP adapters share about a call that failed before any answer came."""

from __future__ import annotations

import requests
from urllib3.exceptions import NewConnectionError


def never_connected(exc: requests.RequestException) -> bool:
    """True when a failed call provably never reached the server (refused, unresolved, connect timeout);
    False when the request may have gone out (read timeout, connection dropped mid-answer)."""
    if isinstance(exc, requests.ConnectTimeout):
        return True
    reason = getattr(exc.args[0], "reason", None) if exc.args else None
    return isinstance(exc, requests.ConnectionError) and isinstance(reason, NewConnectionError)
