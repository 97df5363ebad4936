"""Task arguments carry ids only: phone numbers and gateway payloads are parked, not queued."""

from __future__ import annotations

import base64
import json

import redis

from models import db
from services.platform import parcels
from services.whatsapp import codes, gateway
from tests.factories import make_company


def test_phone_numbers_stay_out_of_task_arguments(make_app, backends):
    namespace = f"{backends.namespace}-args"  # no worker consumes here: the messages stay queued
    app = make_app(redis_namespace=namespace)
    with redis.Redis.from_url(backends.redis_url) as client, app.app_context():
        try:
            company = make_company()
            codes.request_pairing_code(company.id, "+7 900 123-45-67")
            db.session.commit()
            event = {"event": "session.status", "me": {"id": "79001234567@c.us"}, "payload": {"status": "WORKING"}}
            gateway.deliver_event(event)
            receipt = {"event": "message.ack", "session": "company-1",
                       "payload": {"id": "true_79001234567@c.us_3EB0", "ack": 2, "fromMe": True}}
            gateway.deliver_event(receipt)  # kept for the next batch of receipts, not in the task's arguments

            messages = [json.loads(m) for m in client.lrange(f"{namespace}:celery", 0, -1)]
            calls = {m["headers"]["task"]: json.loads(base64.b64decode(m["body"]))[0] for m in messages}
            assert "79001234567" not in json.dumps(calls)
            assert parcels.fetch(calls["whatsapp.pairing_code"][1]) == "79001234567"
            assert parcels.fetch(calls["whatsapp.handle_event"][0]) == event
            assert calls["whatsapp.apply_receipts"] == []
        finally:
            for key in client.scan_iter(f"{namespace}:*", count=1000):
                client.delete(key)
