"""``GET /marketplace/metrics``: Prometheus text, for the admin key or the metrics token."""

from __future__ import annotations

from flask import Response

from services.platform import metrics
from services.platform.errors import Unauthorized
from web.auth import current_principal, metrics_token_presented
from web.limits import protected_limit
from web.marketplace import bp


@bp.get("/metrics")
@protected_limit
def prometheus_metrics() -> Response:
    """Every process's metrics plus the webhook inbox backlog (multiprocess under gunicorn)."""
    principal = current_principal()
    if not (principal is not None and principal.is_admin) and not metrics_token_presented():
        raise Unauthorized("Unauthorized")
    body, content_type = metrics.exposition()
    return Response(body, content_type=content_type)
