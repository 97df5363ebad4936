"""The live service against its OpenAPI document (docs/openapi.yaml), as schemathesis sees it.

Fuzzing: the ``schemathesis run`` CLI against the live server (gunicorn and a real worker), once
anonymous and once with the admin key. Refusals that generated data cannot provoke — a body or a
request line past its limit, a rate limit — are sent on purpose to every operation and judged by
the same checks, through schemathesis' Python API.

(The CLI, not schemathesis' pytest plugin: the plugin does not run under this project's pytest.)
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from functools import cache
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from flask import Flask
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)
from sqlalchemy import func, select

from models import EventStatus, WebhookEvent, db
from web.marketplace.openapi import openapi_document

# The checks run on every response, and why.
USED_CHECKS = {
    "not_a_server_error": "no input, however malformed, makes the service fail (5xx)",
    "status_code_conformance": "every status the service answers is documented for that operation",
    "content_type_conformance": "each answer has its documented media type (JSON, HTML pages, Prometheus text)",
    "response_headers_conformance": "documented headers are present and well-formed (Location, Retry-After)",
    "response_schema_conformance": "bodies match the documented schemas (the one error shape included)",
    "unsupported_method": "a method an operation does not have is 405",
    "allow_header_conformance": "a 405 names the operation's documented methods in Allow",
}
# The checks left out, and why.
STATEFUL = "needs the stateful phase, which follows links between operations and would create companies without end"
UNUSED_CHECKS = {
    "positive_data_acceptance": "would demand that the document encode every validation rule (phone digits, "
    "e-mail, a registered salon, a linked WhatsApp); the document gives types and bounds, the code validates",
    "negative_data_rejection": "webhooks acknowledge any delivery by design (200, stored as rejected)",
    "ignored_auth": "GET /status also takes the connect token from ?token=, which the check keeps while it drops "
    "the declared credential: it would report a false 'accepts requests without authentication'",
    "missing_required_header": "no operation declares a required header",
    "use_after_free": STATEFUL,
    "ensure_resource_availability": STATEFUL,
    "object_level_authorization": STATEFUL,
}

SEED = 20261202  # a failure reproduces with the command in the assertion message
MAX_EXAMPLES = 5  # per operation and phase: the coverage phase adds its boundary values on top
FUZZ_TIMEOUT = 240  # hard stop for one CLI run (10-30 s on this 2-core machine, busy or not)
ST = Path(sys.executable).with_name("st")
WEBHOOK = re.compile(r"/marketplace/webhook/(\d+|yclients)$")


# Readiness may say "not ready" (its documented 503) when the shared worker is slow to answer its ping
# on a busy machine: that is the probe working, not the service failing.
CONFIG = """
[[operations]]
include-path = "/marketplace/health"
checks.not_a_server_error.expected-statuses = ["2xx", "3xx", "4xx", 503]
"""


def _fuzz(base_url: str, run_dir: Path, name: str, headers: dict[str, str]) -> list[dict[str, Any]]:
    """Run the fuzzer; the HAR entries of every request it made."""
    har, config = run_dir / f"schemathesis-{name}.har", run_dir / "schemathesis.toml"
    config.write_text(CONFIG)
    command = [
        str(ST), "--config-file", str(config), "run", f"{base_url}/marketplace/openapi.json", "--url", base_url,
        "--phases", "examples,coverage,fuzzing", "--checks", ",".join(USED_CHECKS),
        "--max-examples", str(MAX_EXAMPLES), "--seed", str(SEED), "--generation-database", "none",
        "--request-timeout", "30", "--workers", "1", "--continue-on-failure", "--no-color",
        "--warnings", "off", "--report", "har", "--report-har-path", str(har),
        *(arg for key, value in headers.items() for arg in ("-H", f"{key}: {value}")),
    ]  # fmt: skip
    # cwd: schemathesis keeps its caches and replay files in the working directory.
    done = subprocess.run(command, cwd=run_dir, capture_output=True, text=True, timeout=FUZZ_TIMEOUT)
    assert done.returncode == 0, f"schemathesis ({name}) found problems:\n{done.stdout[-12000:]}\n{done.stderr[-3000:]}"
    return list(json.loads(har.read_text())["log"]["entries"])


def test_every_check_schemathesis_has_is_used_or_left_out_for_a_reason():
    known = set(schemathesis.checks.CHECKS.get_all_names())
    assert set(USED_CHECKS) | set(UNUSED_CHECKS) == known and not set(USED_CHECKS) & set(UNUSED_CHECKS)


def _webhook_deliveries(entries: list[dict[str, Any]]) -> dict[str, list[int]]:
    """The statuses answered to webhook deliveries: company webhooks by id, and the lifecycle one."""
    found: dict[str, list[int]] = {"company": [], "lifecycle": []}
    for entry in entries:
        matched = WEBHOOK.search(entry["request"]["url"].split("?")[0])
        if matched and entry["request"]["method"] == "POST":
            kind = "lifecycle" if matched.group(1) == "yclients" else "company"
            found[kind].append(entry["response"]["status"])
    return found


def _inbox_rows_after(event_id: int) -> dict[str, int]:
    query = select(WebhookEvent.status, func.count()).where(WebhookEvent.id > event_id).group_by(WebhookEvent.status)
    return {status: count for status, count in db.session.execute(query)}


@pytest.mark.timeout(FUZZ_TIMEOUT + 30)
@pytest.mark.parametrize("credential", ["anonymous", "admin key"])
def test_schemathesis_finds_no_contract_violation(credential, live_server, run_dir, admin_headers, ctx):
    headers = admin_headers if credential == "admin key" else {}
    last_event_id = db.session.scalar(select(func.max(WebhookEvent.id))) or 0
    db.session.rollback()
    entries = _fuzz(live_server, run_dir, credential.replace(" ", "-"), headers)

    deliveries = _webhook_deliveries(entries)
    assert deliveries["company"] and set(deliveries["company"]) == {200}, "company webhooks always answer 200"
    assert set(deliveries["lifecycle"]) <= {200, 401}
    # Bounded: a delivery is at most one inbox row, and none of them (made-up secrets) is queued for the worker.
    stored = _inbox_rows_after(last_event_id)
    assert sum(stored.values()) <= len(deliveries["company"]) + len(deliveries["lifecycle"])
    assert set(stored) <= {EventStatus.REJECTED}, stored


# Refusals sent on purpose to every operation, judged by the same checks.
VALIDATE = [
    not_a_server_error, status_code_conformance, content_type_conformance, response_headers_conformance,
    response_schema_conformance,
]  # fmt: skip
REQUEST_LINE_LIMIT = 4094  # gunicorn's limit_request_line (its default)


@cache
def _operations() -> list[Any]:
    schema = schemathesis.openapi.from_dict(openapi_document())
    return [result.ok() for result in schema.get_all_operations()]


def _plain_case(operation: Any, **overrides: Any) -> Any:
    """A request to ``operation`` with every required parameter set to ``1`` (an id, or a token that is not one)."""
    path = {p.name: "1" for p in operation.path_parameters}
    query = {p.name: "1" for p in operation.query if p.is_required}
    return operation.Case(path_parameters=path, query={**query, **overrides.pop("query", {})}, **overrides)


def _documents(operation: Any, status: int) -> bool:
    return str(status) in openapi_document()["paths"][operation.path][operation.method.lower()]["responses"]


def test_a_request_line_past_the_limit_is_a_documented_414_everywhere(live_server):
    for operation in _operations():
        case = _plain_case(operation, query={"pad": "a" * REQUEST_LINE_LIMIT})
        response = case.call(base_url=live_server, timeout=10)
        assert response.status_code == 414, operation.label
        case.validate_response(response, checks=VALIDATE)


def test_a_body_past_the_limit_is_a_documented_413_and_webhooks_still_answer_200(
    live_server, app: Flask, admin_headers
):
    too_large = b'{"pad": "' + b"a" * app.config["MAX_CONTENT_LENGTH"] + b'"}'
    with_body = [op for op in _operations() if op.body]
    assert len(with_body) > 5
    for operation in with_body:
        case = _plain_case(operation, body=too_large, media_type="application/json", headers=admin_headers)
        response = case.call(base_url=live_server, timeout=10)
        if operation.path.startswith("/marketplace/webhook/"):
            expected = {200}
        elif "{token}" in operation.path or operation.path.startswith("/marketplace/salon/"):
            expected = {401, 413}  # the connect token in the path, or the salon's cookie, is checked first
        else:
            expected = {413}
        assert response.status_code in expected, operation.label
        case.validate_response(response, checks=VALIDATE)


@pytest.fixture
def limited_app(make_app) -> Flask:
    """The app with limits on: one request per hour in each budget."""
    return make_app(ratelimit_enabled=True, ratelimit_public="1/hour", ratelimit_protected="1/hour")


def test_every_limited_operation_documents_its_429_and_no_other_does(limited_app, worker, ctx):
    limited, documented = set(), set()
    for operation in _operations():
        case = _plain_case(operation)
        case.call(app=limited_app)  # the budgets are shared: from the second request on, a limited one is over
        response = case.call(app=limited_app)
        case.validate_response(response, checks=VALIDATE)
        if response.status_code == 429:
            limited.add(operation.label)
        if _documents(operation, 429):
            documented.add(operation.label)
    assert limited == documented
    assert "POST /marketplace/webhook/{companyId}" not in limited
