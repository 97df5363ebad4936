"""Every Celery setting, derived from the service settings (which come from the environment)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from kombu import Queue

from services.platform.jobs import Job
from services.platform.settings import Settings

# Webhook processing has a queue of its own: a burst of deliveries waits there while session tasks, QR
# codes, messages and beat's ticks keep moving in the default queue (a worker takes from both in turn).
DEFAULT_QUEUE = "celery"
WEBHOOK_QUEUE = "celery.webhooks"

# Modules whose @shared_task functions the worker registers.
TASK_MODULES = ("tasks.health", "tasks.webhooks", "tasks.yclients", "tasks.whatsapp", "tasks.messaging")


def config_for(settings: Settings) -> dict[str, Any]:
    """The Celery configuration for one deployment."""
    prefix = f"{settings.redis_namespace}:"
    return {
        "broker_url": settings.redis_url,
        # kombu's Redis transport, minus a client object built per message (services/broker.py).
        "broker_transport": "tasks.broker:Transport",
        "result_backend": settings.redis_url,
        # Keys of this deployment stay apart from others sharing the Redis server.
        "broker_transport_options": {
            "global_keyprefix": prefix,
            "visibility_timeout": settings.celery_visibility_timeout,
            # A publisher facing a dead broker gives up within a fraction of a second instead of
            # retrying the connection for seconds (web requests enqueue; beat sweeps recover).
            # The worker's consumer reconnects on its own schedule (broker_connection_max_retries).
            "max_retries": 1,
            "interval_start": 0,
            "interval_step": 0.2,
            "interval_max": 0.5,
        },
        "result_backend_transport_options": {"global_keyprefix": prefix},
        "broker_connection_retry_on_startup": True,
        "imports": TASK_MODULES,
        "task_default_queue": DEFAULT_QUEUE,
        "task_queues": (Queue(DEFAULT_QUEUE), Queue(WEBHOOK_QUEUE)),
        "task_routes": {Job.WEBHOOKS_PROCESS: {"queue": WEBHOOK_QUEUE},
                        Job.WEBHOOKS_PROCESS_BATCH: {"queue": WEBHOOK_QUEUE}},
        # JSON only: tasks take ids and plain values.
        "task_serializer": "json",
        "result_serializer": "json",
        "accept_content": ["json"],
        # A task is acknowledged after it ran; a killed worker's task goes back to the queue.
        "task_acks_late": True,
        "task_reject_on_worker_lost": True,
        "worker_prefetch_multiplier": 1,
        # Flower needs the worker's events (received, started, succeeded, failed, retried): every task
        # shows there from the moment a worker takes it. No task-sent events: they were one more publish
        # per enqueue (four per message sent to a client), and what they added, a task still waiting in
        # the queue, Flower's broker page shows as the queue's length.
        "worker_send_task_events": True,
        "task_send_sent_event": False,
        "task_track_started": True,
        "result_expires": 3600,
        "task_time_limit": 300,
        "task_soft_time_limit": 240,
        "worker_hijack_root_logger": False,
        "timezone": "UTC",
        # Every task here is declared with ignore_result: nothing reads a scheduled task's result, and
        # storing one is Redis work around the clock (tests/test_jobs.py keeps it so).
        "beat_schedule": {
            "beat-heartbeat": {"task": Job.BEAT_HEARTBEAT, "schedule": timedelta(seconds=15)},
            "webhooks-sweep": {"task": Job.WEBHOOKS_SWEEP, "schedule": timedelta(seconds=5)},
            "messaging-tick": {"task": Job.MESSAGING_TICK,
                               "schedule": timedelta(seconds=settings.messaging_tick_seconds)},
            "webhooks-prune-rejected": {"task": Job.WEBHOOKS_PRUNE_REJECTED, "schedule": timedelta(minutes=10)},
            "yclients-callbacks-sweep": {"task": Job.YCLIENTS_CALLBACKS_SWEEP, "schedule": timedelta(seconds=30)},
            "whatsapp-events-sweep": {"task": Job.WHATSAPP_EVENTS_SWEEP, "schedule": timedelta(seconds=15)},
            "whatsapp-reconcile": {"task": Job.WHATSAPP_RECONCILE_SWEEP, "schedule": timedelta(minutes=1)},
        },
    }
