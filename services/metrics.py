"""Prometheus metrics of the service (prometheus-client; multiprocess mode under gunicorn/Celery).

Every process imports the same objects; with ``PROMETHEUS_MULTIPROC_DIR`` set, values are written
to that folder and ``/marketplace/metrics`` aggregates them across processes.
"""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

HTTP_REQUESTS = Counter(
    "ycwa_http_requests_total", "HTTP requests by endpoint, method and status", ["endpoint", "method", "status"]
)
HTTP_LATENCY = Histogram(
    "ycwa_http_request_duration_seconds",
    "HTTP request latency by endpoint",
    ["endpoint", "method"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
WEBHOOKS_RECEIVED = Counter(
    "ycwa_webhooks_received_total", "Webhook deliveries by source and outcome (accepted, duplicate, rejected)",
    ["source", "outcome"],
)
TASKS = Counter("ycwa_tasks_total", "Celery task runs by task and outcome (success, retry, failure)", ["task", "outcome"])
TASK_DURATION = Histogram("ycwa_task_duration_seconds", "Celery task run time by task", ["task"])
WEBSOCKET_CONNECTIONS = Gauge(
    "ycwa_websocket_connections", "Open WebSocket connections", multiprocess_mode="livesum"
)
QR_CODES_ISSUED = Counter("ycwa_qr_codes_issued_total", "WhatsApp QR codes issued to connect pages")
PAIRING_CODES_ISSUED = Counter("ycwa_pairing_codes_issued_total", "WhatsApp pairing codes issued")
CALLBACKS = Counter(
    "ycwa_callbacks_total", "Activation callbacks to YClients by outcome (sent, rejected, retrying, dead)",
    ["outcome"],
)
