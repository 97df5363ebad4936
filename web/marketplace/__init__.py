"""The ``/marketplace`` blueprint; each module adds its routes to it."""

from __future__ import annotations

from flask import Blueprint

bp = Blueprint("marketplace", __name__, url_prefix="/marketplace")

# Route modules register themselves on ``bp`` when imported.
from web.marketplace import (  # noqa: E402,F401
    callback,
    companies,
    connect,
    metrics,
    pages,
    registration,
    ws,
)
from web.marketplace import webhooks  # noqa: E402,F401
from web.marketplace import admin_webhooks  # noqa: E402,F401
