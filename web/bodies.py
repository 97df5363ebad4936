"""Reading request bodies: every JSON body goes through the one reader (services.platform.json_input)."""

from __future__ import annotations

from typing import Any

from flask import request
from flask.json.provider import DefaultJSONProvider
from werkzeug.exceptions import RequestEntityTooLarge

from services.platform import json_input


def json_object() -> dict[str, Any]:
    """The body as a JSON object (``{}`` when empty); 400 for malformed, too deep or non-object JSON,
    413 past ``json_input.MAX_BYTES``."""
    if (request.content_length or 0) > json_input.MAX_BYTES:
        raise RequestEntityTooLarge()
    raw = request.get_data(cache=True)
    if len(raw) > json_input.MAX_BYTES:
        raise RequestEntityTooLarge()
    if not raw.strip():
        return {}
    return json_input.load_object(raw)


class BoundedJSONProvider(DefaultJSONProvider):
    """Flask's JSON, with ``loads`` bounded like every other reader (``request.get_json`` included)."""

    def loads(self, s: str | bytes, **kwargs: Any) -> Any:
        return json_input.load(s, max_bytes=max(len(s), json_input.MAX_BYTES))
