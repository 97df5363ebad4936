"""Rejected webhook deliveries: stored compact, counted per sending IP in the metrics, pruned after their retention."""

from __future__ import annotations

from datetime import timedelta
from urllib.parse import urlsplit

from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import select, update

from models import EventStatus, WebhookEvent, db, utcnow
from services.webhooks import rejections
from services.webhooks.parsing import EXCERPT_CHARS


def _own_path(made) -> str:
    url = urlsplit(made.webhook_url)
    return f"{url.path}?{url.query}"


def _rejected() -> list[WebhookEvent]:
    db.session.rollback()
    return list(db.session.scalars(select(WebhookEvent).where(WebhookEvent.status == EventStatus.REJECTED)))


def test_a_rejected_delivery_keeps_an_excerpt_and_a_reason_only(client, ctx, company_factory):
    made = company_factory()
    body = b'{"type": "booking_created", "data": {"comment": "' + b"x" * 8000 + b'"}}'
    client.post(f"/marketplace/webhook/{made.id}?secret=wrong", data=body, content_type="application/json")
    client.post("/marketplace/webhook/yclients", data=body, content_type="application/json")
    events = _rejected()
    assert len(events) == 2
    for event in events:
        assert len(event.payload["excerpt"]) == EXCERPT_CHARS <= 512 and set(event.payload) <= {
            "excerpt", "url_company_id"}


def _metric(client, admin_headers, name: str) -> list[tuple[dict, float]]:
    text = client.get("/marketplace/metrics", headers=admin_headers).get_data(as_text=True)
    return [(s.labels, s.value) for family in text_string_to_metric_families(text) for s in family.samples
            if s.name == name]


def test_rejected_deliveries_are_counted_per_sender_ip_with_a_bounded_label_set(client, ctx, company_factory,
                                                                                admin_headers):
    made = company_factory()
    for n in range(8):  # eight senders; 10.7.0.1 sends the most, then 10.7.0.2
        for _ in range(max(1, 4 - n)):
            client.post(f"/marketplace/webhook/{made.id}?secret=wrong", json={}, environ_base={
                "REMOTE_ADDR": f"10.7.0.{n + 1}"})
    client.post("/marketplace/webhook/yclients", json={"partner_token": "guess"}, environ_base={
        "REMOTE_ADDR": "10.7.0.1"})
    client.post(_own_path(made),
                json={"type": "booking_created", "data": {"id": 1}}, environ_base={"REMOTE_ADDR": "10.7.0.99"})
    assert _metric(client, admin_headers, "ycwa_webhook_rejected_senders") == [({}, 8.0)]
    top = _metric(client, admin_headers, "ycwa_webhook_rejected_top_senders")
    assert len(top) == rejections.TOP_SENDERS
    assert top[:2] == [({"rank": "1", "ip": "10.7.0.1"}, 5.0), ({"rank": "2", "ip": "10.7.0.2"}, 3.0)]
    assert all(labels["ip"] != "10.7.0.99" for labels, _ in top)  # accepted deliveries are not counted


def test_rejected_deliveries_older_than_the_retention_are_pruned(client, ctx, company_factory):
    made = company_factory()
    for _ in range(3):
        client.post(f"/marketplace/webhook/{made.id}?secret=wrong", json={})
    client.post(_own_path(made),
                json={"type": "booking_created", "data": {"id": 1}})
    old = [e.id for e in _rejected()][:2]
    db.session.execute(update(WebhookEvent).where(WebhookEvent.id.in_(old)).values(
        received_at=utcnow() - timedelta(hours=73)))
    db.session.commit()
    assert rejections.prune() == 2
    assert len(_rejected()) == 1
    assert db.session.scalar(select(WebhookEvent.status).where(WebhookEvent.status != EventStatus.REJECTED)) is not None


def test_the_prune_task_is_scheduled(app):
    from services.platform.jobs import Job

    schedule = app.extensions["celery"].conf.beat_schedule
    assert any(entry["task"] == Job.WEBHOOKS_PRUNE_REJECTED for entry in schedule.values())
