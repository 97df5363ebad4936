"""Operator endpoints for the webhook inbox (admin key): list, replay, counts by status."""

from __future__ import annotations

from flask import Response, jsonify, request

from services.platform.errors import InvalidInput
from services.platform.ids import as_id, bad_id_message, parse_id
from services.webhooks import admin
from web.auth import require_admin
from web.bodies import json_object
from web.limits import protected_limit
from web.marketplace import bp


def _int_arg(name: str) -> int | None:
    return parse_id(request.args.get(name), name)


@bp.get("/admin/webhooks")
@protected_limit
@require_admin
def list_webhook_events() -> Response:
    """Inbox events newest first: ``?status=dead&company_id=&limit=&before_id=&payload=1``."""
    events = admin.list_events(
        status=request.args.get("status") or None,
        company_id=_int_arg("company_id"),
        limit=_int_arg("limit") or 50,
        before_id=_int_arg("before_id"),
    )
    with_payload = request.args.get("payload") in ("1", "true")
    return jsonify(success=True, events=[admin.serialise(e, with_payload) for e in events])


@bp.post("/admin/webhooks/replay")
@protected_limit
@require_admin
def replay_webhook_events() -> Response:
    """Replay failed/dead events: ``{"ids": [..]}`` or ``{"status": "dead"}``."""
    body = json_object()
    ids = body.get("ids") or []
    if not isinstance(ids, list) or len(ids) > admin.MAX_LIST:
        raise InvalidInput(f"ids must be a list of at most {admin.MAX_LIST} event ids")
    if any(isinstance(i, str) or as_id(i) is None for i in ids):
        raise InvalidInput(bad_id_message("ids"))
    status = body.get("status")
    if status is not None and not isinstance(status, str):
        raise InvalidInput("status must be a string")
    return jsonify(success=True, **admin.replay(ids, status))


@bp.get("/admin/webhooks/stats")
@protected_limit
@require_admin
def webhook_event_stats() -> Response:
    """How many inbox events are in each status."""
    return jsonify(success=True, by_status=admin.counts_by_status())
