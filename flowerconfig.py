"""Flower's configuration file (Flower reads ``flowerconfig.py`` from its working directory).

The password is not here and not on the command line, where ``ps`` shows it to every user of the
host: Flower reads ``FLOWER_BASIC_AUTH`` (``user:password``) from the environment itself.

Flower 2.2 leaves ``/metrics`` open even with basic auth on (its handler lacks the ``authenticated``
guard its pages have); it lists every task name, worker and queue. It is put behind the same guard
here. ``/healthcheck`` stays open for the container health check. In production Flower does not
start without a password.
"""

import os

import tornado.web
from flower.views import monitor

if os.environ.get("APP_ENV") == "production" and ":" not in os.environ.get("FLOWER_BASIC_AUTH", ""):
    raise SystemExit("configuration error: FLOWER_BASIC_AUTH (user:password) must be set for Flower in production")

purge_offline_workers = 60
# Workers send events by configuration (celeryconfig.py): Flower need not broadcast enable_events to
# them every 5 s, which it does by default (docs/BENCHMARKS.md, "Idle `make run`").
enable_events = False

if not getattr(monitor.Metrics.get, "__wrapped__", None):
    monitor.Metrics.get = tornado.web.authenticated(monitor.Metrics.get)
