"""The Celery broker transport: kombu's Redis transport with one client per channel."""

from __future__ import annotations

import uuid

from kombu import Exchange, Queue

from services.platform import runtime
from tasks import broker


def test_the_app_publishes_through_the_transport_and_builds_one_client_per_channel(ctx, monkeypatch):
    celery = runtime.celery()
    queue = Queue(f"broker-test-{uuid.uuid4().hex[:8]}", Exchange("broker-test", type="direct"), routing_key="t")
    with celery.connection_for_write() as connection:
        assert isinstance(connection.transport, broker.Transport)
        channel = connection.default_channel
        built: list[bool] = []
        create = channel._create_client
        monkeypatch.setattr(channel, "_create_client", lambda asynchronous=False: built.append(asynchronous)
                            or create(asynchronous=asynchronous))
        producer = connection.Producer(channel)
        for n in range(5):
            producer.publish({"n": n}, exchange=queue.exchange, routing_key="t", declare=[queue], serializer="json")
        assert built == [False]  # one synchronous client for every publish
        received = []
        with connection.SimpleQueue(queue) as simple:
            for _ in range(5):
                message = simple.get(timeout=2)
                received.append(message.payload["n"])
                message.ack()
        queue(channel).delete()
    assert received == [0, 1, 2, 3, 4]
