"""Messaging of one salon (company key or admin key): settings and templates, the message log, replies,
numbers, and a preview of a template."""

from __future__ import annotations

from typing import Any

from flask import request

from models import db
from services.companies.queries import get_company
from services.messaging import history, preview, settings
from services.platform.ids import parse_id
from web.auth import require_company
from web.bodies import json_object
from web.limits import protected_limit
from web.marketplace import bp


def _int_arg(name: str, default: int) -> int:
    return parse_id(request.args.get(name), name) or default


# One rule for both methods: with two, Werkzeug answers a PUT to an out-of-range id with a 405 from
# the GET rule instead of the 404 every other id route gives.
@bp.route("/companies/<id:company_id>/messaging", methods=["GET", "PUT"])
@protected_limit
@require_company
def messaging_settings(company_id: int) -> dict[str, Any]:
    """GET: the salon's messaging settings, every template with its default, the placeholders.
    PUT: change some of them (only the fields sent); every problem is listed in ``errors``."""
    if request.method == "GET":
        return {"success": True, "settings": settings.serialise(get_company(company_id))}
    changes = json_object()  # a body past its limit is a 413 whoever asks
    company = get_company(company_id)
    row = settings.change(company, changes)
    db.session.commit()
    return {"success": True, "settings": settings.serialise(company, row)}


@bp.get("/companies/<id:company_id>/messages")
@protected_limit
@require_company
def messages(company_id: int) -> dict[str, Any]:
    """The message log, newest first: ``?state=&kind=&q=&limit=&before_id=``."""
    get_company(company_id)
    found = history.list_messages(
        company_id, state=request.args.get("state") or None, kind=request.args.get("kind") or None,
        search=request.args.get("q") or None, limit=_int_arg("limit", 50), before_id=_int_arg("before_id", 0) or None,
    )
    return {"success": True, "messages": found}


@bp.get("/companies/<id:company_id>/messages/replies")
@protected_limit
@require_company
def replies(company_id: int) -> dict[str, Any]:
    """What clients wrote to the salon's number, newest first: ``?limit=&before_id=``."""
    get_company(company_id)
    found = history.list_replies(company_id, _int_arg("limit", 50), _int_arg("before_id", 0) or None)
    return {"success": True, "replies": found}


@bp.get("/companies/<id:company_id>/messages/stats")
@protected_limit
@require_company
def message_stats(company_id: int) -> dict[str, Any]:
    """Sent, delivered, read, failed, confirmed, cancelled, opted out per day: ``?days=30``."""
    return {"success": True, "stats": history.stats(get_company(company_id), _int_arg("days", 30))}


@bp.post("/companies/<id:company_id>/messages/preview")
@protected_limit
@require_company
def message_preview(company_id: int) -> dict[str, Any]:
    """``{"kind", "template"?, "booking_id"?}`` rendered as the client would receive it."""
    body = json_object()
    booking_id = parse_id(body.get("booking_id"), "booking_id")
    return {"success": True, **preview.preview(get_company(company_id), body.get("kind"), body.get("template"),
                                               booking_id)}
