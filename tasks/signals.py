"""Celery signal handlers: task metrics, and the request id carried from the web into tasks.

When a task is published, the request id of the work in progress (the HTTP request, or the task
that enqueues another) goes into the message headers; while the task runs it is bound to the log
context together with the task's id and name, so the task's log lines carry the same request_id.
"""

from __future__ import annotations

import os
import time
from contextvars import Token
from typing import Any

from celery import Task, signals

from services.platform import logs, metrics

REQUEST_ID_HEADER = "request_id"

# Per process (each prefork child runs one task at a time): start time and log token by task id.
_running: dict[str, tuple[float, Token[dict[str, str] | None]]] = {}


def _task_name(task: Task | None, sender: Any = None) -> str:
    return str(getattr(task, "name", None) or getattr(sender, "name", None) or sender or "unknown")


def _on_publish(headers: dict[str, Any] | None = None, **_: Any) -> None:
    request_id = logs.current_request_id()
    if request_id and headers is not None and not headers.get(REQUEST_ID_HEADER):
        headers[REQUEST_ID_HEADER] = request_id


def _presented_request_id(task: Task) -> str | None:
    request = task.request
    value = getattr(request, REQUEST_ID_HEADER, None) or (request.headers or {}).get(REQUEST_ID_HEADER)
    return str(value) if value else None


def _on_prerun(task_id: str | None = None, task: Task | None = None, **_: Any) -> None:
    if task_id is None or task is None:
        return
    token = logs.bind(request_id=_presented_request_id(task), task_id=task_id, task_name=task.name)
    _running[task_id] = (time.perf_counter(), token)


def _on_postrun(task_id: str | None = None, task: Task | None = None, **_: Any) -> None:
    started = _running.pop(task_id or "", None)
    if started is None:
        return
    began, token = started
    metrics.TASK_DURATION.labels(task=_task_name(task)).observe(time.perf_counter() - began)
    logs.unbind(token)


def _on_success(sender: Task | None = None, **_: Any) -> None:
    metrics.TASKS.labels(task=_task_name(sender), outcome="success").inc()


def _on_retry(sender: Task | None = None, **_: Any) -> None:
    metrics.TASKS.labels(task=_task_name(sender), outcome="retry").inc()


def _on_failure(sender: Task | None = None, **_: Any) -> None:
    metrics.TASKS.labels(task=_task_name(sender), outcome="failure").inc()


def _on_process_shutdown(**_: Any) -> None:
    metrics.mark_process_dead(os.getpid())


def _keep_our_logging(**_: Any) -> None:
    """Having a receiver stops Celery from replacing the handlers ``create_app`` installed."""


def connect() -> None:
    """Connect the handlers (idempotent: each has a dispatch uid)."""
    signals.before_task_publish.connect(_on_publish, dispatch_uid="ycwa.publish", weak=False)
    signals.task_prerun.connect(_on_prerun, dispatch_uid="ycwa.prerun", weak=False)
    signals.task_postrun.connect(_on_postrun, dispatch_uid="ycwa.postrun", weak=False)
    signals.task_success.connect(_on_success, dispatch_uid="ycwa.success", weak=False)
    signals.task_retry.connect(_on_retry, dispatch_uid="ycwa.retry", weak=False)
    signals.task_failure.connect(_on_failure, dispatch_uid="ycwa.failure", weak=False)
    signals.worker_process_shutdown.connect(_on_process_shutdown, dispatch_uid="ycwa.shutdown", weak=False)
    signals.setup_logging.connect(_keep_our_logging, dispatch_uid="ycwa.logging", weak=False)
