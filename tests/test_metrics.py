"""``/marketplace/metrics``: protected, Prometheus text, aggregated across the web and the worker."""

from __future__ import annotations

from datetime import timedelta

import pytest
from prometheus_client.parser import text_string_to_metric_families

from models import WebhookEvent, db, utcnow
from tests.support import wait_until

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def scrape(client, headers) -> Samples:
    response = client.get("/marketplace/metrics", headers=headers)
    assert response.status_code == 200, response.data
    assert response.content_type.startswith("text/plain")
    samples: Samples = {}
    for family in text_string_to_metric_families(response.get_data(as_text=True)):
        for sample in family.samples:
            samples[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return samples


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


def test_metrics_need_the_admin_key_or_the_metrics_token(make_app, admin_headers):
    client = make_app(metrics_token="metrics-token-0123456789").test_client()
    assert client.get("/marketplace/metrics").status_code == 401
    assert client.get("/marketplace/metrics").json == {"success": False, "error": "Unauthorized"}
    assert client.get("/marketplace/metrics", headers={"Authorization": "Bearer wrong-token"}).status_code == 401
    assert client.get("/marketplace/metrics", headers={"X-API-Key": "sk_not_a_real_key_000000"}).status_code == 401
    assert client.get("/marketplace/metrics", headers=admin_headers).status_code == 200
    bearer = {"Authorization": "Bearer metrics-token-0123456789"}
    assert client.get("/marketplace/metrics", headers=bearer).status_code == 200


def test_company_keys_do_not_open_the_metrics(client, company_factory):
    company = company_factory()
    assert client.get("/marketplace/metrics", headers={"X-API-Key": company.api_key}).status_code == 401


def test_http_requests_are_counted_by_endpoint_and_status(client, admin_headers):
    before = scrape(client, admin_headers)
    for _ in range(3):
        assert client.get("/marketplace/test").status_code == 200
    assert client.get("/marketplace/no-such-page/12345").status_code == 404
    after = scrape(client, admin_headers)

    def requests(samples: Samples, **labels: str) -> float:
        return value(samples, "ycwa_http_requests_total", method="GET", **labels)

    ok = {"endpoint": "marketplace.self_test", "status": "200"}
    assert requests(after, **ok) - requests(before, **ok) == 3
    missing = {"endpoint": "unmatched", "status": "404"}
    assert requests(after, **missing) - requests(before, **missing) == 1
    # Raw paths never become labels.
    assert not any("12345" in str(labels) for _, labels in after)

    latency = {"endpoint": "marketplace.self_test", "method": "GET"}
    count = value(after, "ycwa_http_request_duration_seconds_count", **latency)
    assert count - value(before, "ycwa_http_request_duration_seconds_count", **latency) == 3
    assert value(after, "ycwa_http_request_duration_seconds_bucket", le="+Inf", **latency) == count
    assert value(after, "ycwa_http_request_duration_seconds_sum", **latency) > 0


def test_task_outcomes_and_durations_come_from_the_real_worker(app, client, admin_headers, worker):
    before = scrape(client, admin_headers)
    result = app.extensions["celery"].send_task("health.ping", args=["metrics"])
    assert result.get(timeout=10)["nonce"] == "metrics"

    def grew(samples: Samples, name: str, **labels: str) -> bool:
        return value(samples, name, **labels) > value(before, name, **labels)

    def counted() -> Samples | None:
        # The outcome is counted when the task returns, its duration just after (task_postrun).
        now = scrape(client, admin_headers)
        done = grew(now, "ycwa_tasks_total", task="health.ping", outcome="success")
        return now if done and grew(now, "ycwa_task_duration_seconds_count", task="health.ping") else None

    after = wait_until(counted, timeout=10)
    assert value(after, "ycwa_task_duration_seconds_sum", task="health.ping") > 0


@pytest.mark.usefixtures("ctx")
def test_inbox_backlog_counts_webhook_events_by_status(client, admin_headers):
    empty = scrape(client, admin_headers)
    assert value(empty, "ycwa_webhook_inbox_events", status="received") == 0
    assert value(empty, "ycwa_webhook_inbox_oldest_age_seconds", status="received") == 0

    statuses = ["received"] * 3 + ["failed"] * 2 + ["dead", "processed"]
    for n, status in enumerate(statuses):
        db.session.add(WebhookEvent(
            source="yclients", dedupe_key=f"metrics-{n}", type="booking_created", payload={}, status=status,
            received_at=utcnow() - timedelta(minutes=n),
        ))
    db.session.commit()

    samples = scrape(client, admin_headers)
    assert value(samples, "ycwa_webhook_inbox_events", status="received") == 3
    assert value(samples, "ycwa_webhook_inbox_events", status="failed") == 2
    assert value(samples, "ycwa_webhook_inbox_events", status="dead") == 1
    assert value(samples, "ycwa_webhook_inbox_events", status="processed") == 1
    assert value(samples, "ycwa_webhook_inbox_events", status="processing") == 0
    # The oldest received event is two minutes old; the oldest failed one four.
    assert 115 < value(samples, "ycwa_webhook_inbox_oldest_age_seconds", status="received") < 300
    assert 235 < value(samples, "ycwa_webhook_inbox_oldest_age_seconds", status="failed") < 420


def test_every_defined_metric_is_exposed_with_help(client, admin_headers):
    text = client.get("/marketplace/metrics", headers=admin_headers).get_data(as_text=True)
    names = {family.name for family in text_string_to_metric_families(text)}
    assert {"ycwa_http_requests", "ycwa_http_request_duration_seconds", "ycwa_qr_codes_issued",
            "ycwa_pairing_codes_issued", "ycwa_webhook_inbox_events"} <= names
