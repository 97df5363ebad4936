"""Publish/subscribe of JSON events, with a Redis implementation and an in-memory twin.

Publishers (tasks, services) call ``publish``; each web process holds one subscriber that fans
messages out to the callbacks registered for a channel (WebSocket connections, tests).
"""

from __future__ import annotations

import json
import logging
import threading
import time
from abc import ABC, abstractmethod
from collections import defaultdict
from collections.abc import Callable
from typing import Any

import redis as redis_lib

log = logging.getLogger(__name__)

Message = dict[str, Any]
Callback = Callable[[Message], None]


def company_channel(company_id: int) -> str:
    """The channel that carries one company's events."""
    return f"company:{company_id}"


class EventBus(ABC):
    """Channels of JSON messages; callbacks run on the bus's thread and must not block."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._callbacks: dict[str, set[Callback]] = defaultdict(set)

    @abstractmethod
    def publish(self, channel: str, message: Message) -> None:
        """Send ``message`` to every subscriber of ``channel`` in every process."""

    def emit(self, company_id: int, event: str, data: dict[str, Any]) -> None:
        """Publish a company event in the shape the WebSocket clients receive."""
        self.publish(company_channel(company_id), {"event": event, "company_id": company_id, "data": data})

    def subscribe(self, channel: str, callback: Callback) -> Callable[[], None]:
        """Call ``callback`` for each message on ``channel``; returns the unsubscribe function."""
        self._ensure_listening()
        with self._lock:
            self._callbacks[channel].add(callback)

        def unsubscribe() -> None:
            with self._lock:
                callbacks = self._callbacks.get(channel)
                if callbacks is not None:
                    callbacks.discard(callback)
                    if not callbacks:
                        del self._callbacks[channel]

        return unsubscribe

    def _dispatch(self, channel: str, message: Message) -> None:
        with self._lock:
            callbacks = list(self._callbacks.get(channel, ()))
        for callback in callbacks:
            try:
                callback(message)
            except Exception:
                log.exception("event callback failed on %s", channel)

    def _ensure_listening(self) -> None:
        """Start whatever delivers messages to this process (nothing for the in-memory bus)."""
        return None

    def close(self) -> None:
        """Stop listening and drop every subscription."""
        with self._lock:
            self._callbacks.clear()


class MemoryEventBus(EventBus):
    """The in-process twin: delivery is immediate and reaches this process only."""

    def publish(self, channel: str, message: Message) -> None:
        self._dispatch(channel, json.loads(json.dumps(message)))


class RedisEventBus(EventBus):
    """Redis pub/sub: one pattern subscription and one listener thread per process."""

    def __init__(self, client: redis_lib.Redis, namespace: str) -> None:
        super().__init__()
        self._client = client
        self._prefix = f"{namespace}:events:"
        self._thread: threading.Thread | None = None
        self._stopped = threading.Event()
        self._ready = threading.Event()

    def publish(self, channel: str, message: Message) -> None:
        self._client.publish(self._prefix + channel, json.dumps(message, ensure_ascii=False))

    def _ensure_listening(self) -> None:
        with self._lock:
            if self._thread is not None and self._thread.is_alive():
                return
            self._stopped.clear()
            self._ready.clear()
            self._thread = threading.Thread(target=self._listen, name="event-bus", daemon=True)
            self._thread.start()
        # Subscriptions made before the pattern is registered in Redis would miss early messages.
        self._ready.wait(timeout=5)

    def _listen(self) -> None:
        backoff = 0.1
        while not self._stopped.is_set():
            pubsub = self._client.pubsub(ignore_subscribe_messages=True)
            try:
                pubsub.psubscribe(self._prefix + "*")
                pubsub.get_message(timeout=1.0)  # the psubscribe confirmation
                self._ready.set()
                backoff = 0.1
                while not self._stopped.is_set():
                    raw = pubsub.get_message(timeout=1.0)
                    if raw is None or raw["type"] != "pmessage":
                        continue
                    channel = raw["channel"]
                    if isinstance(channel, bytes):
                        channel = channel.decode()
                    try:
                        message = json.loads(raw["data"])
                    except ValueError:
                        log.warning("dropped a malformed event on %s", channel)
                        continue
                    self._dispatch(channel.removeprefix(self._prefix), message)
            except redis_lib.RedisError as exc:
                log.warning("event bus lost Redis (%s); reconnecting in %.1fs", exc, backoff)
                time.sleep(backoff)
                backoff = min(backoff * 2, 5.0)
            finally:
                try:
                    pubsub.close()
                except redis_lib.RedisError:
                    pass

    def close(self) -> None:
        self._stopped.set()
        super().close()
        if self._thread is not None:
            self._thread.join(timeout=3)
            self._thread = None
