"""Ids from the outside world (paths, query strings, JSON bodies): one parser, with the columns' bounds.

Our own rows have INTEGER keys; YClients' salon, record and client ids are kept in BIGINT columns.
A value past the column's range could never name a row, and on SQLite it would not even bind, so
it is refused as invalid input rather than looked up.
"""

from __future__ import annotations

from typing import Any

from services.platform.errors import InvalidInput

MAX_ID = 2**31 - 1
MAX_BIG_ID = 2**63 - 1


def bad_id_message(name: str) -> str:
    """The error text for an id that is not a positive integer in range."""
    return f"Параметр {name} должен быть положительным целым числом"


def as_id(value: Any, maximum: int = MAX_ID) -> int | None:
    """``value`` as an id in ``1..maximum`` (an int, or a string of ASCII digits), else None."""
    if isinstance(value, str):
        text = value.strip()
        if not (text.isascii() and text.isdigit()) or len(text) > len(str(maximum)):
            return None
        value = int(text)
    if isinstance(value, bool) or not isinstance(value, int) or not 0 < value <= maximum:
        return None
    return value


def parse_id(value: Any, name: str, maximum: int = MAX_ID) -> int | None:
    """An optional id: None when absent or empty, ``InvalidInput`` when present but not a valid id."""
    if value is None or value == "":
        return None
    parsed = as_id(value, maximum)
    if parsed is None:
        raise InvalidInput(bad_id_message(name))
    return parsed
