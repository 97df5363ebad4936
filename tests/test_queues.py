"""Webhook processing has a queue of its own: a burst of it does not hold back the other tasks."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import redis

from celeryconfig import WEBHOOK_QUEUE
from services.platform.jobs import Job
from tests.whatsapp_stack import Stack, start_stack


@pytest.fixture(scope="module")
def stack(make_app, backends, service_env, run_dir) -> Iterator[Stack]:
    started = start_stack(make_app, backends, service_env, run_dir)
    yield started
    started.stop()


def test_a_webhook_backlog_does_not_hold_back_other_tasks(stack: Stack):
    celery = stack.app.extensions["celery"]
    assert celery.amqp.router.route({}, Job.WEBHOOKS_PROCESS_BATCH)["queue"].name == WEBHOOK_QUEUE
    assert celery.amqp.router.route({}, Job.MESSAGING_TICK)["queue"].name == celery.conf.task_default_queue
    backlog = f"{stack.namespace}:{WEBHOOK_QUEUE}"
    with celery.producer_or_acquire() as producer:  # events that do not exist: each run finds nothing to do
        for n in range(3000):
            celery.send_task(Job.WEBHOOKS_PROCESS, args=[2_000_000_000 - n], producer=producer)
    with redis.Redis.from_url(stack.redis_url) as client:
        assert client.llen(backlog) > 0
        # The worker takes from its queues in turn: the ping does not wait for the backlog to drain.
        assert celery.send_task(Job.HEALTH_PING, args=["behind a backlog"]).get(timeout=30)
        assert client.llen(backlog) > 0
