"""Request ids and HTTP metrics: every request gets an id (``X-Request-ID``), a log line and a sample."""

from __future__ import annotations

import logging
import re
import time
import uuid

from flask import Flask, Response, g, request

from services.platform import logs
from services.platform.metrics import HTTP_LATENCY, HTTP_REQUESTS

log = logging.getLogger("web.request")

REQUEST_ID_HEADER = "X-Request-ID"
_VALID_ID = re.compile(r"^[A-Za-z0-9._:-]{1,64}$")
UNMATCHED = "unmatched"


def request_id_from(presented: str | None) -> str:
    """The caller's id when it is a sane token, a fresh one otherwise."""
    if presented and _VALID_ID.match(presented):
        return presented
    return uuid.uuid4().hex


def _endpoint() -> str:
    # The matched route's name keeps the label set small (no ids or secrets from raw paths).
    return request.url_rule.endpoint if request.url_rule is not None else UNMATCHED


def _is_websocket() -> bool:
    return request.headers.get("Upgrade", "").lower() == "websocket"


def init_app(app: Flask) -> None:
    """Install the before/after/teardown hooks on ``app``."""

    @app.before_request
    def _start() -> None:
        g.request_started = time.perf_counter()
        g.request_id = request_id_from(request.headers.get(REQUEST_ID_HEADER))
        g.log_token = logs.bind(request_id=g.request_id)

    @app.after_request
    def _finish(response: Response) -> Response:
        started = g.get("request_started")
        if started is None:
            return response
        response.headers[REQUEST_ID_HEADER] = g.request_id
        endpoint, status = _endpoint(), response.status_code
        elapsed = time.perf_counter() - started
        HTTP_REQUESTS.labels(endpoint=endpoint, method=request.method, status=str(status)).inc()
        if not _is_websocket():  # a socket's "latency" is its whole lifetime
            HTTP_LATENCY.labels(endpoint=endpoint, method=request.method).observe(elapsed)
        log.info(
            "%s %s %s %.1fms", request.method, request.path, status, elapsed * 1000,
            extra={"endpoint": endpoint, "status": status, "duration_ms": round(elapsed * 1000, 1)},
        )
        return response

    @app.teardown_request
    def _unbind(_exc: BaseException | None) -> None:
        token = g.pop("log_token", None)
        if token is not None:
            logs.unbind(token)
