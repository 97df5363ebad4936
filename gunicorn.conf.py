"""Gunicorn settings for the web process (values overridable from the environment)."""

import os

from gunicorn.glogging import Logger

from services.platform.logs import escape_controls

bind = os.environ.get("GUNICORN_BIND", f"0.0.0.0:{os.environ.get('PORT', '3000')}")
# gthread: each WebSocket holds a thread while open, so threads bound the sockets per process
# (docs/BENCHMARKS.md, "WebSockets"); threads are started on demand, so idle capacity costs nothing.
# The app refuses sockets beyond WEBSOCKET_MAX_PER_PROCESS (480) so 32 threads always remain for HTTP.
worker_class = "gthread"
workers = int(os.environ.get("WEB_CONCURRENCY", "2"))
threads = int(os.environ.get("GUNICORN_THREADS", "512"))
# gthread also caps open connections (sockets + keep-alive HTTP) per process at this number.
worker_connections = int(os.environ.get("GUNICORN_WORKER_CONNECTIONS", "1000"))
timeout = 60
graceful_timeout = 20
keepalive = 5
accesslog = os.environ.get("GUNICORN_ACCESSLOG") or None
worker_tmp_dir = "/dev/shm" if os.path.isdir("/dev/shm") else None
# The request line of the access log leaves out query strings (webhook URLs carry a secret there).
access_log_format = '%(h)s "%(m)s %(U)s %(H)s" %(s)s %(b)s %(M)sms rid=%({x-request-id}o)s'


class AccessLogger(Logger):
    """Gunicorn's logger, with control characters of the access line's values escaped (one request, one line)."""

    def atoms(self, resp, req, environ, request_time):
        found = super().atoms(resp, req, environ, request_time)
        return {k: escape_controls(v) if isinstance(v, str) else v for k, v in found.items()}


logger_class = AccessLogger


def _close_websockets(worker):
    """Close the worker's open WebSockets with 1001 so clients reconnect elsewhere at once."""
    app = getattr(worker, "wsgi", None)
    if app is not None:
        from web.shutdown import close_all

        close_all(app)


def post_worker_init(worker):
    """Drain the webhook spool a previous process may have left; on SIGTERM start the graceful drain as
    usual, and close the WebSockets that would hold it."""
    import signal
    import threading

    app = getattr(worker, "wsgi", None)
    if app is not None and hasattr(app, "extensions"):
        from web.marketplace.webhooks import inbox_writer

        inbox_writer(app).start()

    drain = signal.getsignal(signal.SIGTERM)

    def on_term(signum, frame):
        if callable(drain):
            drain(signum, frame)
        # Not in the signal handler itself: sending close frames takes locks the interrupted thread may hold.
        threading.Thread(target=_close_websockets, args=(worker,), name="close-websockets", daemon=True).start()

    signal.signal(signal.SIGTERM, on_term)


def worker_int(worker):
    """SIGINT/SIGQUIT (quick stop): close the sockets before the worker exits."""
    _close_websockets(worker)


def worker_exit(server, worker):
    """Last chance for sockets still open when the graceful timeout ran out."""
    _close_websockets(worker)


def child_exit(server, worker):
    """Drop a dead worker's live-gauge metric files (named as ``services.platform.metrics.process_identifier`` does)."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        import socket

        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(f"{socket.gethostname()}-{worker.pid}")
