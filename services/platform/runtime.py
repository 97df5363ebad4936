"""Accessors for the per-app resources (settings, Redis, event bus), valid inside an app context."""

from __future__ import annotations

from typing import TYPE_CHECKING, cast

from flask import current_app

if TYPE_CHECKING:
    from celery import Celery
    from redis import Redis

    from services.platform.pubsub import EventBus
    from services.platform.settings import Settings


def settings() -> Settings:
    """The settings the current app was built with."""
    return cast("Settings", current_app.config["SETTINGS"])


def redis() -> Redis:
    """The current app's Redis client (a connection pool shared by its threads)."""
    return cast("Redis", current_app.extensions["redis"])


def bus() -> EventBus:
    """The current app's event bus (Redis pub/sub, or its in-memory twin)."""
    return cast("EventBus", current_app.extensions["bus"])


def celery() -> Celery:
    """The current app's Celery app, for enqueueing tasks by name."""
    return cast("Celery", current_app.extensions["celery"])
