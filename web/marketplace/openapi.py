"""``GET /openapi.json``: the OpenAPI 3 document of every endpoint (written in ``docs/openapi.yaml``)."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Any

import yaml
from flask import Response, jsonify

from web.marketplace import bp

DOCUMENT = Path(__file__).resolve().parents[2] / "docs" / "openapi.yaml"


@lru_cache(maxsize=1)
def openapi_document() -> dict[str, Any]:
    """The parsed document (read once per process)."""
    with DOCUMENT.open(encoding="utf-8") as handle:
        return dict(yaml.safe_load(handle))


@bp.get("/openapi.json")
def openapi_json() -> Response:
    """The API description for tools and integrators."""
    return jsonify(openapi_document())
