"""The ``/marketplace`` blueprint; each module adds its routes to it."""

from __future__ import annotations

from flask import Blueprint

bp = Blueprint("marketplace", __name__, url_prefix="/marketplace")

# Route modules register themselves on ``bp`` when imported.
from web.marketplace import (  # noqa: E402,F401
    admin_webhooks,
    callback,
    companies,
    connect,
    messaging,
    metrics,
    openapi,
    pages,
    registration,
    salon,
    webhooks,
    ws,
)
