"""Gunicorn settings for the web process (values overridable from the environment)."""

import os

bind = os.environ.get("GUNICORN_BIND", f"0.0.0.0:{os.environ.get('PORT', '3000')}")
# gthread: each WebSocket holds a thread while open, so threads bound the sockets per process.
worker_class = "gthread"
workers = int(os.environ.get("WEB_CONCURRENCY", "2"))
threads = int(os.environ.get("GUNICORN_THREADS", "64"))
timeout = 60
graceful_timeout = 20
keepalive = 5
accesslog = os.environ.get("GUNICORN_ACCESSLOG") or None
worker_tmp_dir = "/dev/shm" if os.path.isdir("/dev/shm") else None
