"""``POST /register`` and ``GET /install`` (the YClients marketplace redirect)."""

from __future__ import annotations

from typing import Any

from flask import redirect, render_template, request
from werkzeug.wrappers import Response

from models import db
from services.access import install_signature
from services.companies import registration
from services.platform.errors import ServiceError
from web.auth import current_principal
from web.bodies import json_object
from web.errors import status_of
from web.limits import public_limit
from web.marketplace import bp
from web.marketplace.salon import signed_in_redirect


@bp.post("/register")
@public_limit
def register() -> tuple[dict[str, Any], int]:
    """Register a salon; re-registering needs the company's key, the admin key or a YClients signature."""
    payload = json_object()
    data = registration.parse_registration(payload)
    user = None
    if payload.get("user_data") or payload.get("user_data_sign"):
        user = install_signature.verify_user_data(payload.get("user_data"), payload.get("user_data_sign"))
    result = registration.register_company(data, current_principal(), user)
    db.session.commit()
    return result.as_json(), 201 if result.created else 200


@bp.get("/install")
@public_limit
def install_redirect() -> Response | tuple[str, int]:
    """Verify YClients' signed redirect, register or re-attach the salon, send the owner to its connect page —
    or, once WhatsApp is linked, signed in to the salon page."""
    try:
        user = install_signature.verify_user_data(request.args.get("user_data"), request.args.get("user_data_sign"))
        salon_value = request.args.get("salon_id") or next(iter(request.args.getlist("salon_ids[]")), None)
        salon_id = registration.parse_salon_id(salon_value)
        result = registration.install_company(salon_id, user)
    except ServiceError as exc:
        db.session.rollback()
        return render_template("install_error.html", message=exc.message), status_of(exc)
    db.session.commit()
    if result.company.whatsapp_connected:
        return signed_in_redirect(result.company.id)
    return redirect(result.connect_url, code=302)
