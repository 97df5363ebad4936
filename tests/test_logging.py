"""Structured logs: JSON lines, a request id from the HTTP request into its tasks, secrets masked."""

from __future__ import annotations

import io
import json
import logging
import uuid
from collections.abc import Callable, Iterator

import pytest
import redis
from flask import Flask

from services.access import tokens
from services.phones import mask_phone
from services.platform.logs import Redactor, configure_logging
from tests.support import Backends, ServiceProcess, wait_until

PARTNER_TOKEN = "partner-token-abcdefghijklmnop"


def _our_handler() -> logging.StreamHandler:  # type: ignore[type-arg]
    return next(h for h in logging.getLogger().handlers if getattr(h, "_ycwa", False))  # type: ignore[return-value]


def _captured(make_app: Callable[..., Flask], app: Flask, **settings: str) -> Iterator[tuple[Flask, io.StringIO]]:
    """An app with ``settings``, and the lines its process's handler writes meanwhile."""
    logging_app = make_app(**settings)
    handler = _our_handler()
    buffer = io.StringIO()
    previous = handler.setStream(buffer)
    yield logging_app, buffer
    handler.setStream(previous)
    configure_logging(app.config["SETTINGS"])


@pytest.fixture
def json_log(make_app: Callable[..., Flask], app: Flask) -> Iterator[tuple[Flask, io.StringIO]]:
    """An app logging JSON, and the lines its process's handler writes."""
    yield from _captured(make_app, app, log_format="json", yclients_partner_token=PARTNER_TOKEN)


def lines(text: str) -> list[dict]:
    """Every JSON line of a log (other lines, such as a start-up banner, are skipped)."""
    return [json.loads(line) for line in text.splitlines() if line.startswith("{")]


def test_request_id_is_echoed_and_logged_as_json(json_log):
    app, buffer = json_log
    response = app.test_client().get("/marketplace/test", headers={"X-Request-ID": "req-echo-1"})
    assert response.headers["X-Request-ID"] == "req-echo-1"
    entries = lines(buffer.getvalue())
    assert entries, buffer.getvalue()
    request_line = next(e for e in entries if e["logger"] == "web.request")
    assert request_line["request_id"] == "req-echo-1"
    assert request_line["level"] == "info"
    assert request_line["status"] == 200 and request_line["endpoint"] == "marketplace.self_test"
    assert {"ts", "level", "logger", "message"} <= set(request_line)


def test_a_fresh_request_id_is_made_when_none_or_a_bad_one_is_sent(json_log):
    app, _ = json_log
    client = app.test_client()
    first = client.get("/marketplace/test").headers["X-Request-ID"]
    bad = "bad id <script>" + "x" * 80
    second = client.get("/marketplace/test", headers={"X-Request-ID": bad}).headers["X-Request-ID"]
    assert len(first) == 32 and len(second) == 32 and first != second


@pytest.fixture(scope="module")
def json_worker(
    make_app: Callable[..., Flask], worker_factory: Callable[..., ServiceProcess], backends: Backends
) -> Iterator[tuple[Flask, ServiceProcess]]:
    """A real worker logging JSON on its own Redis namespace, and an app that enqueues to it."""
    namespace = f"{backends.namespace}-logs"
    app = make_app(redis_namespace=namespace, log_format="json")
    proc = worker_factory(wait=False, REDIS_NAMESPACE=namespace, LOG_FORMAT="json")

    def answers() -> bool:
        assert proc.running, proc.output()[-3000:]
        try:
            return bool(app.extensions["celery"].send_task("health.ping", args=["up"]).get(timeout=2))
        except Exception:
            return False

    wait_until(answers, timeout=60, interval=0.2)
    yield app, proc
    with redis.Redis.from_url(backends.redis_url) as client:
        for key in client.scan_iter(f"{namespace}:*", count=1000):
            client.delete(key)


def test_the_request_id_follows_the_work_into_the_task_the_worker_runs(json_worker, json_log):
    app, proc = json_worker
    _, buffer = json_log
    request_id = "req-" + uuid.uuid4().hex[:12]
    response = app.test_client().get("/marketplace/health", headers={"X-Request-ID": request_id})
    assert response.headers["X-Request-ID"] == request_id

    web_line = next(e for e in lines(buffer.getvalue()) if e["logger"] == "web.request")
    assert web_line["request_id"] == request_id and web_line["endpoint"] == "marketplace.readiness"

    def task_lines() -> list[dict]:
        return [e for e in lines(proc.output()) if e.get("request_id") == request_id]

    found = wait_until(task_lines, timeout=15)
    assert all(e["task_name"] == "health.ping" and e["task_id"] for e in found), found
    assert any("succeeded" in e["message"] for e in found), found


def test_worker_lines_are_json(json_worker):
    _, proc = json_worker
    log_lines = [line for line in proc.output().splitlines() if line.startswith("{")]
    assert log_lines
    for line in log_lines:
        entry = json.loads(line)
        assert {"ts", "level", "logger", "message"} <= set(entry)


def test_keys_tokens_secrets_and_phones_never_appear_in_full(json_log, ctx):
    _, buffer = json_log
    api_key = "sk_" + "Abc123" + "x" * 37
    jwt = tokens.issue_connect_token(7, 900123)
    url = "https://example.test/marketplace/webhook/7?secret=Zm9vYmFyYmF6cXV4MTIzNDU2Nzg5"
    log = logging.getLogger("tests.redaction")
    log.info("issued %s for %s", api_key, "+79001234567")
    log.info("token=%s url=%s", jwt, url)
    log.info("partner %s header Authorization: Bearer %s", PARTNER_TOKEN, jwt)
    log.info("chat 79001234567@c.us and +7 (900) 123-45-67", extra={"phone": "+79001234567", "data": {
        "args": ["+79001234567"], "nested": {"api_key": api_key},
    }})
    try:
        raise RuntimeError(f"upstream rejected {api_key}")
    except RuntimeError:
        log.exception("callback failed")
    text = buffer.getvalue()
    for secret in (api_key, jwt, "Zm9vYmFyYmF6cXV4MTIzNDU2Nzg5", PARTNER_TOKEN, "79001234567", "123-45-67"):
        assert secret not in text
    assert "sk_Abc…" in text
    assert "+7900*****67" in text
    assert "secret=Zm9…" in text
    entries = lines(text)
    assert len(entries) == 5
    assert entries[3]["phone"] == "+7900*****67"
    assert entries[3]["data"] == {"args": ["+7900*****67"], "nested": {"api_key": "sk_Abc…"}}
    assert "sk_Abc…" in entries[4]["exc"]


@pytest.mark.parametrize(
    ("raw", "masked"),
    [
        ("key sk_live_0123456789abcdef", "key sk_liv…"),
        ('{"partner_token": "abcdef123456"}', '{"partner_token": "abc…"}'),
        ("/webhook/1?secret=abcdefghij&x=1", "/webhook/1?secret=abc…&x=1"),
        ("call +79001234567 now", "call +7900*****67 now"),
        ("order 1700000000 at 2024-01-01", "order 1700000000 at 2024-01-01"),
        ("company 123456 salon 900001", "company 123456 salon 900001"),
    ],
)
def test_redactor(raw, masked):
    assert Redactor()(raw) == masked


def test_mask_phone_keeps_country_code_prefix_and_last_digits():
    assert mask_phone("+7 (900) 123-45-67") == "+7900*****67"
    assert mask_phone("89001234567") == "+8900*****67"


@pytest.fixture
def text_log(make_app: Callable[..., Flask], app: Flask) -> Iterator[tuple[Flask, io.StringIO]]:
    """An app logging readable text, and the lines its process's handler writes."""
    yield from _captured(make_app, app, log_format="text")


FORGED = "/marketplace/x%0a2030-01-01 00:00:00,000 INFO web.request: GET /admin 200%0d%e2%80%a8%1b[2J%c2%85"


def test_a_path_cannot_forge_a_text_log_line(text_log):
    text_app, buffer = text_log
    text_app.test_client().get(FORGED)
    [line] = [line for line in buffer.getvalue().splitlines() if "web.request" in line and "/marketplace/x" in line]
    assert "\\n2030-01-01" in line and "\\r" in line and "\\u2028" in line and "\\x1b[2J" in line
    assert len(buffer.getvalue().splitlines()) == len(buffer.getvalue().split("\n")) - 1  # nothing but \n ends lines


def test_a_path_cannot_forge_a_json_log_line(json_log):
    json_app, buffer = json_log
    json_app.test_client().get(FORGED)
    text = buffer.getvalue()
    assert text.splitlines() == text.rstrip("\n").split("\n")
    [entry] = [e for e in lines(text) if e.get("endpoint") == "unmatched"]
    assert "\n2030-01-01" in entry["message"] and "\u2028" in entry["message"]


def test_a_traceback_keeps_its_lines_but_none_passes_for_a_record(text_log):
    _, buffer = text_log
    try:
        raise ValueError("bad input\n2030-01-01 00:00:00,000 INFO forged: line\x1b[31m")
    except ValueError:
        logging.getLogger("tests.forgery").exception("failed")
    [first, *rest] = [line for line in buffer.getvalue().splitlines() if line]
    assert "tests.forgery" in first and rest and all(line.startswith("    ") for line in rest)
    assert "\\x1b[31m" in buffer.getvalue()


def test_gunicorn_access_lines_escape_control_characters():
    import importlib.util

    from tests.support import ROOT

    spec = importlib.util.spec_from_file_location("gunicorn_conf", ROOT / "gunicorn.conf.py")
    assert spec is not None and spec.loader is not None
    conf = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(conf)
    from gunicorn.config import Config

    cfg = Config()
    cfg.set("accesslog", "-")
    cfg.set("access_log_format", conf.access_log_format)
    logger = conf.AccessLogger(cfg)

    class Response:
        status, headers, sent, response_length = "200 OK", [("X-Request-ID", "r1")], 0, 0

    environ = {"REQUEST_METHOD": "GET", "PATH_INFO": "/x\n2030 forged\u2028", "SERVER_PROTOCOL": "HTTP/1.1",
               "REMOTE_ADDR": "127.0.0.1", "QUERY_STRING": "", "RAW_URI": "/x"}
    import datetime

    atoms = logger.atoms(Response(), [], environ, datetime.timedelta(seconds=0.001))
    assert atoms["U"] == "/x\\n2030 forged\\u2028"
