"""``GET /status/:companyId`` and ``GET /companies`` (connection stats)."""

from __future__ import annotations

from typing import Any

from services.companies import queries
from web.auth import presented_api_key, presented_token, require_admin
from web.limits import protected_limit
from web.marketplace import bp


@bp.get("/status/<id:company_id>")
@protected_limit
def company_status(company_id: int) -> dict[str, Any]:
    """The company's connection status for its connect token, its API key or the admin key."""
    status = queries.company_status(company_id, presented_api_key(), presented_token())
    return {"success": True, **status}


@bp.get("/companies")
@protected_limit
@require_admin
def connection_stats() -> dict[str, Any]:
    """Connection stats of every company (admin key)."""
    return {"success": True, "stats": queries.connection_stats()}
