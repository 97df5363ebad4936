"""The Celery broker transport: kombu's Redis transport, with one Redis client per channel.

kombu's Redis channel builds a new ``redis.Redis`` object for every publish, fanout and ack
(``Channel.conn_or_acquire``), and redis-py 7 fills some 300 response callbacks into each one:
most of a ``send_task``'s CPU time (docs/BENCHMARKS.md, "Figures behind the code"). The clients are interchangeable
views of the channel's connection pool, so one client built once per channel sends exactly the
same commands over the same pool.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from functools import cached_property
from typing import Any

from kombu.transport import redis


class Channel(redis.Channel):
    """A Redis channel that reuses one client for the commands it sends outside its poll loop."""

    @cached_property
    def _shared_client(self) -> Any:
        return self._create_client()

    @contextmanager
    def conn_or_acquire(self, client: Any = None) -> Iterator[Any]:
        yield client or self._shared_client


class Transport(redis.Transport):
    """``redis://`` brokers, with the channel above."""

    Channel = Channel
