"""The Flask application factory."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import redis
from flask import Flask
from werkzeug.middleware.proxy_fix import ProxyFix

from models import db
from services.messaging.hooks import connect as connect_messaging
from services.platform import json_input
from services.platform.logs import configure_logging
from services.platform.pubsub import EventBus, MemoryEventBus, RedisEventBus
from services.platform.settings import Settings, load_settings
from services.webhooks.writer import init_app as init_inbox_writer
from services.whatsapp.gateway import init_app as init_gateway
from tasks import celery_init_app
from web.bodies import BoundedJSONProvider
from web.cli_admin import register_admin_commands
from web.cli_messages import messages_cli
from web.cli_webhooks import webhooks_cli
from web.cli_whatsapp import whatsapp_cli
from web.errors import register_error_handlers
from web.extensions import limiter, sock
from web.limits import register_rate_limit_handler
from web.observability import init_app as init_observability
from web.routing import IdConverter
from web.shutdown import init_app as init_shutdown
from web.socketio_server import init_app as init_socketio
from web.ws_hub import init_app as init_socket_slots

ROOT = Path(__file__).resolve().parent.parent


class ServiceApp(Flask):
    """Flask, with every JSON body read by the one bounded reader."""

    json_provider_class = BoundedJSONProvider


def _event_bus(settings: Settings, client: redis.Redis) -> EventBus:
    if settings.pubsub_backend == "memory":
        return MemoryEventBus()
    return RedisEventBus(client, settings.redis_namespace)


def create_app(overrides: dict[str, Any] | None = None) -> Flask:
    """Build the app from the environment, with ``overrides`` taking precedence (tests)."""
    settings = load_settings(**(overrides or {}))
    configure_logging(settings)

    app = ServiceApp(
        __name__,
        template_folder=str(ROOT / "templates"),
        static_folder=str(ROOT / "static"),
        static_url_path="/marketplace/static",
    )
    app.config.update(
        SETTINGS=settings,
        SECRET_KEY=settings.secret_key,
        MAX_CONTENT_LENGTH=1024 * 1024,
        # Frames over the cap of every JSON input are refused while they arrive: the socket closes with 1009.
        SOCK_SERVER_OPTIONS={"ping_interval": 25, "max_message_size": json_input.MAX_BYTES},
        # The limiter object is shared by every app in a process; RATELIMIT_ENABLED off is honoured per app by a
        # request filter in web.limits, and a Redis outage lets requests through rather than failing them.
        RATELIMIT_ENABLED=True,
        RATELIMIT_SWALLOW_ERRORS=True,
        RATELIMIT_STORAGE_URI=settings.redis_url,
        # Counters under the deployment namespace (the storage would otherwise prefix them with "LIMITS").
        RATELIMIT_STORAGE_OPTIONS={"key_prefix": f"{settings.redis_namespace}:limits"},
        RATELIMIT_HEADERS_ENABLED=True,
        RATELIMIT_STRATEGY="fixed-window",
    )
    app.url_map.converters["id"] = IdConverter
    app.json.sort_keys = False  # type: ignore[attr-defined]
    app.json.ensure_ascii = False  # type: ignore[attr-defined]

    client = redis.Redis.from_url(settings.redis_url, health_check_interval=30, socket_timeout=10)
    app.extensions["redis"] = client
    app.extensions["bus"] = _event_bus(settings, client)
    init_observability(app)  # first, so every later hook's early answer is counted and has an id
    init_shutdown(app)
    init_socket_slots(app)
    db.init_app(app)
    init_inbox_writer(app)
    init_gateway(app)
    limiter.init_app(app)
    sock.init_app(app)
    register_error_handlers(app)
    register_rate_limit_handler(app)
    init_socketio(app)
    if settings.trusted_proxies:  # outermost, so Socket.IO sees the client address too
        n = settings.trusted_proxies
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=n, x_proto=n, x_host=n)  # type: ignore[method-assign]

    from web.marketplace import bp as marketplace

    app.register_blueprint(marketplace)
    register_admin_commands(app)
    app.cli.add_command(webhooks_cli)
    app.cli.add_command(whatsapp_cli)
    app.cli.add_command(messages_cli)
    connect_messaging()
    celery_init_app(app)
    return app
