"""Landing page, the reference's self-test, and our health checks."""

from __future__ import annotations

from flask import Response, jsonify, render_template

from services.platform import health
from services.whatsapp import health as whatsapp_health
from web.limits import public_limit
from web.marketplace import bp

ENDPOINTS = {
    "connect": "/marketplace/connect",
    "register": "POST /marketplace/register",
    "qr": "/marketplace/qr/:token",
    "status": "/marketplace/status/:companyId",
    "callback": "POST /marketplace/callback",
    "webhook": "POST /marketplace/webhook/:companyId",
    "companies": "/marketplace/companies",
}


@bp.get("/")
@public_limit
def landing() -> str:
    """What the integration does and how to install it."""
    return render_template("landing.html")


@bp.get("/test")
@public_limit
def self_test() -> Response:
    """The reference's readiness answer, word for word."""
    return jsonify(
        success=True,
        status="ok",
        endpoints=ENDPOINTS,
        message="Marketplace integration endpoints are ready",
    )


@bp.get("/health")
def readiness() -> tuple[Response, int]:
    """Database, broker and worker reachability (200 ready, 503 not), beat's heartbeat age, the WhatsApp gateway."""
    ready, checks = health.report()
    # Reported, as beat is: a gateway refusing salons is an operator's problem, not the web's readiness.
    checks["whatsapp"] = health.check(whatsapp_health.gateway_check)
    body = jsonify(success=ready, status="ok" if ready else "unavailable", checks=checks)
    return body, 200 if ready else 503


@bp.get("/health/live")
def liveness() -> Response:
    """The process answers; no dependency is touched."""
    return jsonify(success=True, status="alive")
