"""Celery wired to the Flask app: every task runs inside an app context (Flask's own pattern)."""

from __future__ import annotations

from typing import Any

from celery import Celery, Task
from flask import Flask

import celeryconfig
from tasks import signals


def celery_init_app(app: Flask) -> Celery:
    """Create the Celery app for ``app`` and store it in ``app.extensions["celery"]``."""

    class FlaskTask(Task):
        def __call__(self, *args: Any, **kwargs: Any) -> Any:
            with app.app_context():
                return self.run(*args, **kwargs)

    celery_app = Celery(app.name, task_cls=FlaskTask)
    celery_app.conf.update(celeryconfig.config_for(app.config["SETTINGS"]))
    celery_app.set_default()
    signals.connect()
    app.extensions["celery"] = celery_app
    return celery_app
