"""The one JSON error shape, and the mapping of domain errors to HTTP statuses."""

from __future__ import annotations

import logging
from typing import Any

from flask import Flask, Response, jsonify
from werkzeug.exceptions import HTTPException

from models import db
from services.platform import errors

log = logging.getLogger(__name__)

STATUS_BY_ERROR: dict[type[errors.ServiceError], int] = {
    errors.InvalidInput: 400,
    errors.Unauthorized: 401,
    errors.Forbidden: 403,
    errors.NotFound: 404,
    errors.Conflict: 409,
    errors.UpstreamError: 502,
    errors.Unavailable: 503,
}

MESSAGE_BY_STATUS = {
    400: "Некорректный запрос",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not found",
    405: "Method not allowed",
    413: "Request body too large",
    415: "Unsupported media type",
    500: "Внутренняя ошибка сервера",
}


def status_of(exc: errors.ServiceError) -> int:
    """The HTTP status of a domain error."""
    return next((code for cls, code in STATUS_BY_ERROR.items() if isinstance(exc, cls)), 400)


def error_response(status: int, message: str, **extra: Any) -> tuple[Response, int]:
    """``{"success": false, "error": message, ...extra}`` with ``status``."""
    return jsonify({"success": False, "error": message, **extra}), status


def register_error_handlers(app: Flask) -> None:
    """Install the handlers that turn every failure into the one JSON shape."""

    @app.errorhandler(errors.ServiceError)
    def _service_error(exc: errors.ServiceError) -> tuple[Response, int]:
        return error_response(status_of(exc), exc.message, **exc.extra)

    @app.errorhandler(HTTPException)
    def _http_error(exc: HTTPException) -> Any:
        status = exc.code or 500
        if status == 429:
            return exc.get_response()
        response, _ = error_response(status, MESSAGE_BY_STATUS.get(status, exc.name))
        # The exception's own headers (Allow on a 405, WWW-Authenticate …), not its HTML content type.
        response.headers.extend((k, v) for k, v in exc.get_headers() if k.lower() != "content-type")
        return response, status

    @app.errorhandler(Exception)
    def _unexpected(exc: Exception) -> tuple[Response, int]:
        db.session.rollback()
        log.exception("unhandled error")
        return error_response(500, MESSAGE_BY_STATUS[500])
