"""URL converters: ``<id:name>`` matches only ids our INTEGER keys can hold (anything else is a 404)."""

from __future__ import annotations

from typing import Any

from werkzeug.routing import IntegerConverter

from services.platform.ids import MAX_ID


class IdConverter(IntegerConverter):
    """A positive id in the range of the database's INTEGER keys."""

    def __init__(self, url_map: Any, maximum: int = MAX_ID) -> None:
        super().__init__(url_map, min=1, max=maximum)
