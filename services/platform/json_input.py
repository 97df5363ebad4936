"""The one reader of untrusted JSON: request bodies, WebSocket frames, webhook deliveries, signed user data.

It bounds the size and the nesting depth, refuses ``NaN``/``Infinity`` and numbers out of range, and
refuses text PostgreSQL cannot store (NUL, lone surrogates). Everything it refuses raises
``JsonRejected`` (an ``InvalidInput``: 400 in the one error shape) with the reason in English in
``reason`` for logs and stored rejections.
"""

from __future__ import annotations

import json
import math
import re
from typing import Any

from services.platform.errors import InvalidInput

BAD_JSON = "Некорректный JSON в теле запроса"
MAX_DEPTH = 32
EMPTY = "empty document"
MALFORMED = "malformed JSON"
# Bodies of the JSON API and socket frames; webhooks have their own (larger) setting.
MAX_BYTES = 64 * 1024
# In a UTF-8 document, a NUL or a lone surrogate can only enter a decoded string through a \u escape
# (raw control characters are refused by the parser, and the bytes must decode): documents without
# such an escape skip the walk over every string.
_SUSPECT_ESCAPE = re.compile(rb"\\u(?:0000|[dD][89a-fA-F])")


class JsonRejected(InvalidInput):
    """The document is not acceptable JSON; ``reason`` says why."""

    def __init__(self, reason: str, message: str = BAD_JSON) -> None:
        super().__init__(message)
        self.reason = reason


def _reject_constant(name: str) -> Any:
    raise JsonRejected(f"{name} is not a number")


def _finite(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise JsonRejected("number out of range")
    return value


def _check(value: Any, max_depth: int, check_text: bool) -> None:
    """Depth and storable text, walked without recursion."""
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict | list):
            if depth > max_depth:
                raise JsonRejected(f"nested deeper than {max_depth} levels")
            children = [*item.keys(), *item.values()] if isinstance(item, dict) else item
            stack.extend((child, depth + 1) for child in children)
        elif check_text and isinstance(item, str):
            if "\x00" in item:
                raise JsonRejected("NUL character in a string")
            try:
                item.encode("utf-8")
            except UnicodeEncodeError:
                raise JsonRejected("invalid Unicode in a string") from None


def load(raw: bytes | str, max_bytes: int = MAX_BYTES, max_depth: int = MAX_DEPTH) -> Any:
    """Parse ``raw`` within the limits; ``JsonRejected`` for anything else."""
    data = raw.encode("utf-8", "surrogatepass") if isinstance(raw, str) else raw
    if len(data) > max_bytes:
        raise JsonRejected(f"larger than {max_bytes} bytes")
    if not data.strip():
        raise JsonRejected(EMPTY)
    try:
        value = json.loads(data, parse_constant=_reject_constant, parse_float=_finite)
    except JsonRejected:
        raise
    except (ValueError, RecursionError):  # RecursionError: nested past the interpreter's limit
        raise JsonRejected(MALFORMED) from None
    suspect = isinstance(raw, str) or json.detect_encoding(data) not in ("utf-8", "utf-8-sig")
    _check(value, max_depth, suspect or bool(_SUSPECT_ESCAPE.search(data)))
    return value


def load_object(raw: bytes | str, max_bytes: int = MAX_BYTES, max_depth: int = MAX_DEPTH) -> dict[str, Any]:
    """Like ``load``, for documents that must be a JSON object."""
    value = load(raw, max_bytes, max_depth)
    if not isinstance(value, dict):
        raise JsonRejected("not a JSON object")
    return value
