"""``GET /marketplace/metrics``: Prometheus text, for the admin key or the metrics token."""

from __future__ import annotations

import hmac

from flask import Response, request

from services.platform import metrics, runtime
from services.platform.errors import Unauthorized
from web.auth import current_principal
from web.marketplace import bp


def _metrics_token_presented() -> bool:
    configured = runtime.settings().metrics_token
    scheme, _, value = request.headers.get("Authorization", "").partition(" ")
    if not configured or scheme.lower() != "bearer" or not value.strip():
        return False
    return hmac.compare_digest(value.strip().encode(), configured.encode())


@bp.get("/metrics")
def prometheus_metrics() -> Response:
    """Every process's metrics plus the webhook inbox backlog (multiprocess under gunicorn)."""
    principal = current_principal()
    if not (principal is not None and principal.is_admin) and not _metrics_token_presented():
        raise Unauthorized("Unauthorized")
    body, content_type = metrics.exposition()
    return Response(body, content_type=content_type)
