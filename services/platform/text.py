"""Text from outside that lands in single-line fields (names, e-mail, phone, titles): one line, bounded.

Control characters (C0, C1, DEL, the Unicode line and paragraph separators) have no place in a
name or an address: shown on a page or written to a log they break lines, and PostgreSQL refuses
NUL outright. Free text that may span lines (a booking comment) is kept as it came, in JSON.
"""

from __future__ import annotations

import re
from typing import Any

CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029]")
_SPACES = re.compile(r"\s+")


def has_controls(text: str) -> bool:
    """Whether ``text`` holds a control character."""
    return CONTROL.search(text) is not None


def single_line(value: Any, max_length: int) -> str | None:
    """``value`` as one line of at most ``max_length`` characters (controls become spaces, runs of
    whitespace one space, ends trimmed); None for None or when nothing is left."""
    if value is None:
        return None
    text = _SPACES.sub(" ", CONTROL.sub(" ", str(value))).strip()
    return text[:max_length] or None
