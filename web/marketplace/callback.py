"""``POST /callback`` (send the activation callback to YClients) and ``GET /callback/:id``."""

from __future__ import annotations

from typing import Any

from flask import url_for

from models import CallbackStatus, db
from services.access import api_keys
from services.access.api_keys import Principal
from services.callbacks import activation
from services.companies import queries
from services.platform import runtime
from services.platform.errors import Unauthorized, UpstreamError
from web.auth import current_principal, presented_api_key
from web.bodies import json_object
from web.limits import protected_limit
from web.marketplace import bp

SENT = "Callback отправлен"
QUEUED = "Callback поставлен в очередь: YClients пока не подтвердил, попытки продолжаются"


def _principal(payload: dict[str, Any]) -> Principal:
    """The key from the headers, or the ``api_key`` field of the reference's body."""
    principal = current_principal()
    body_key = payload.get("api_key")
    if principal is None and not presented_api_key() and isinstance(body_key, str):
        principal = api_keys.authenticate(body_key)
    if principal is None:
        raise Unauthorized("Unauthorized")
    return principal


@bp.post("/callback")
@protected_limit
def send_callback() -> tuple[dict[str, Any], int] | tuple[dict[str, Any], int, dict[str, str]]:
    """Send the company's activation callback and wait briefly for YClients' answer."""
    payload = json_object()
    principal = _principal(payload)
    company_id = queries.company_for_principal(payload.get("company_id"), payload.get("salon_id"), principal)
    row = activation.resend_callback(company_id)
    db.session.commit()
    row = activation.wait_for_final(row.id, runtime.settings().callback_wait_seconds)
    state = activation.describe(row)
    if row.status == CallbackStatus.SENT:
        return {"success": True, "message": SENT, "data": state}, 200
    if row.status in CallbackStatus.FINAL:
        raise UpstreamError(row.error or "YClients отклонил callback", data=state)
    status_url = url_for("marketplace.callback_status", callback_id=row.id)
    return {"success": True, "message": QUEUED, "data": {**state, "status_url": status_url}}, 202, {
        "Location": status_url
    }


@bp.get("/callback/<id:callback_id>")
@protected_limit
def callback_status(callback_id: int) -> dict[str, Any]:
    """The state of one callback, for the company's key or the admin key."""
    principal = current_principal()
    if principal is None:
        raise Unauthorized("Unauthorized")
    return {"success": True, "data": activation.callback_state(callback_id, principal)}
