"""Webhook receivers: YClients data webhooks per company, and the marketplace lifecycle webhook.

Both always answer ``200 {"success": true}`` (YClients only needs a 2xx, and a non-2xx makes it
retry), whatever the body, and are exempt from rate limits. The exceptions: a lifecycle delivery
with a wrong or unconfigured partner token gets 401, so a misconfigured partner cabinet shows up as
failed deliveries in YClients' logs instead of silently succeeding; and a delivery that could not be
kept gets 503 with ``Retry-After``, so YClients sends it again (an acknowledged delivery is a kept
one): a company delivery neither stored nor spooled, or a lifecycle delivery while the database is
away (it is not spooled: its salon and installation are looked up in the database to file it).
"""

from __future__ import annotations

import logging
from typing import cast

from flask import Flask, Response, current_app, g, jsonify, request
from werkzeug.exceptions import RequestEntityTooLarge

from models import db
from services.platform import runtime
from services.webhooks import lifecycle, rejections
from services.webhooks.ingest import Outcome, Received, database_unavailable
from services.webhooks.writer import INBOX_WRITER, InboxWriter
from web.errors import error_response
from web.limits import client_ip, unlimited
from web.marketplace import bp

log = logging.getLogger(__name__)
STORE_FAILED_RETRY_AFTER = 30


def inbox_writer(app: Flask) -> InboxWriter:
    """The app's inbox writer (built with the app; its threads start on first use, after any fork)."""
    return cast(InboxWriter, app.extensions[INBOX_WRITER])


def read_body() -> bytes | None:
    """The request body, read with a bound (not trusting Content-Length); None when it is too large."""
    limit = runtime.settings().webhook_max_body_bytes
    try:
        body = request.stream.read(limit + 1)
    except RequestEntityTooLarge:
        return None
    except Exception:  # a client that hung up mid-body: stored as an empty, rejected delivery
        log.warning("webhook body could not be read", exc_info=True)
        return b""
    return None if len(body) > limit else body


def _counted(received: Received) -> Received:
    """Count a rejected delivery against its sender's IP (accepted ones skip Redis altogether)."""
    if received.outcome == Outcome.REJECTED:
        rejections.count_sender(client_ip())
    return received


def _request_id() -> str | None:
    value = g.get("request_id") or request.headers.get("X-Request-ID")
    return str(value)[:64] if value else None


@bp.post("/webhook/<int:company_id>")
@unlimited
def company_webhook(company_id: int) -> Response | tuple[Response, int]:
    """Store one YClients delivery for ``company_id`` and acknowledge it at once."""
    app = current_app._get_current_object()  # type: ignore[attr-defined]
    received = _counted(inbox_writer(app).submit(company_id, request.args.get("secret"), read_body(), _request_id()))
    if received.outcome == Outcome.STORE_FAILED:
        return _send_again_later()
    return jsonify(success=True)


def _send_again_later() -> tuple[Response, int]:
    response, status = error_response(503, "Service temporarily unavailable")
    response.headers["Retry-After"] = str(STORE_FAILED_RETRY_AFTER)
    return response, status


@bp.post("/webhook/yclients")
@unlimited
def lifecycle_webhook() -> Response | tuple[Response, int]:
    """Store one marketplace lifecycle delivery (uninstall, freeze)."""
    try:
        received = _counted(lifecycle.receive(read_body(), _request_id()))
    except Exception as exc:
        if not database_unavailable(exc):
            raise
        db.session.rollback()
        log.warning("database unavailable, lifecycle delivery refused with 503 for a retry: %s", exc)
        return _send_again_later()
    if received.outcome == Outcome.STORE_FAILED:
        return _send_again_later()
    if received.reason == lifecycle.INVALID_TOKEN:
        return error_response(401, "Unauthorized")
    return jsonify(success=True)
