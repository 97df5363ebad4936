"""Shared fixtures: the app on this run's backends, a client, a real worker, a live server."""

from __future__ import annotations

import gc
import os
import uuid
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import Engine, text
from sqlalchemy.exc import OperationalError

from models import Base, db
from models.db import make_engine
from services.platform.schema import upgrade
from tests.fakes.yclients import APPLICATION_ID as YCLIENTS_APPLICATION_ID
from tests.fakes.yclients import PARTNER_TOKEN as YCLIENTS_PARTNER_TOKEN
from tests.fakes.yclients import FakeYClients
from tests.support import (
    TEST_SECRET,
    Backends,
    ServiceProcess,
    detect_backends,
    free_port,
    wait_until,
    web_command,
    worker_command,
)

_BACKENDS: Backends | None = None


def pytest_configure(config: pytest.Config) -> None:
    global _BACKENDS
    tmp = Path(config.rootpath) / "var" / "test-runs" / uuid.uuid4().hex[:8]
    tmp.mkdir(parents=True, exist_ok=True)
    # Metrics of the test app and of every service subprocess go to one folder (read at import time).
    (tmp / "metrics").mkdir()
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(tmp / "metrics")
    _BACKENDS = detect_backends(tmp)
    upgrade(_BACKENDS.database_url)
    config.stash[_tmp_key] = tmp


_tmp_key = pytest.StashKey[Path]()


def pytest_report_header(config: pytest.Config) -> list[str]:
    assert _BACKENDS is not None
    return ["integration backends:", *("  " + line for line in _BACKENDS.description)]


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if _BACKENDS is not None:
        terminalreporter.write_line("integration backends used: " + "; ".join(_BACKENDS.description))


def pytest_sessionfinish(session: pytest.Session) -> None:
    # Connection pools that third-party clients keep per thread (Celery's result backend) are only
    # dropped by the garbage collector; collect them here, where an unclosed socket is expected,
    # rather than in pytest's own final sweep. Leaks during the run still fail their test.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ResourceWarning)
        gc.collect()


def pytest_unconfigure(config: pytest.Config) -> None:
    if _BACKENDS is not None:
        _BACKENDS.close()


@pytest.fixture(scope="session")
def backends() -> Backends:
    """This run's database and Redis (real servers when reachable)."""
    assert _BACKENDS is not None
    return _BACKENDS


@pytest.fixture(scope="session")
def run_dir(pytestconfig: pytest.Config) -> Path:
    """A scratch folder for this run (logs of service processes, SQLite files)."""
    return pytestconfig.stash[_tmp_key]


@pytest.fixture(scope="session")
def fake_yclients() -> Iterator[FakeYClients]:
    """A local server answering as YClients' partner API; every process of the run calls it."""
    server = FakeYClients().start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def service_env(backends: Backends, fake_yclients: FakeYClients, run_dir: Path) -> dict[str, str]:
    """Environment shared by the test app and every service subprocess (extend it in fixtures)."""
    return {
        "YCLIENTS_API_URL": fake_yclients.url,
        "YCLIENTS_PARTNER_TOKEN": YCLIENTS_PARTNER_TOKEN,
        "YCLIENTS_APPLICATION_ID": str(YCLIENTS_APPLICATION_ID),
        "YCLIENTS_TIMEOUT_SECONDS": "2",
        "CALLBACK_RETRY_BASE_SECONDS": "0.2",
        "CALLBACK_RETRY_MAX_SECONDS": "1",
        "APP_ENV": "test",
        "DATABASE_URL": backends.database_url,
        # Every app a test builds has its own engine: keep few idle connections in each.
        "DATABASE_POOL_SIZE": "1",
        "REDIS_URL": backends.redis_url,
        "REDIS_NAMESPACE": backends.namespace,
        "SECRET_KEY": TEST_SECRET,
        "RATELIMIT_ENABLED": "false",
        "ADMIN_API_KEY": "sk_test_admin_key_0123456789abcdefghijklmnop",
        "CELERY_VISIBILITY_TIMEOUT": "30",
        "WEBHOOK_SPOOL_DIR": str(run_dir / "spool"),
        "PROMETHEUS_MULTIPROC_DIR": os.environ["PROMETHEUS_MULTIPROC_DIR"],
    }


def _overrides(env: dict[str, str]) -> dict[str, Any]:
    return {k.lower(): v for k, v in env.items()}


# Every app the tests built; their idle database connections are closed after each test, so a run
# holds few connections however many apps it builds (the machine's PostgreSQL serves other runs too).
_BUILT_APPS: list[Flask] = []


@pytest.fixture(scope="session")
def make_app(service_env: dict[str, str]) -> Iterator[Callable[..., Flask]]:
    """Build an app on this run's backends with extra settings (``make_app(ratelimit_enabled=True)``)."""
    apps = _BUILT_APPS

    def factory(**overrides: Any) -> Flask:
        from web import create_app

        app = create_app({**_overrides(service_env), **overrides})
        app.config["TESTING"] = True
        apps.append(app)
        return app

    yield factory
    for app in apps:
        app.extensions["db"].engine.dispose()
        app.extensions["bus"].close()
        app.extensions["redis"].close()
        celery_app = app.extensions["celery"]
        backend_client = getattr(celery_app.backend, "client", None)
        if backend_client is not None:
            backend_client.close()
        celery_app.close()
    # Imported here: importing the web package earlier would load the metrics before
    # pytest_configure has pointed them at the run's multiprocess folder.
    from web.extensions import limiter

    storage = getattr(limiter, "_storage", None)  # the rate limiter's own Redis client
    if storage is not None and hasattr(storage, "storage"):
        storage.storage.close()
    db.session.remove()


@pytest.fixture(scope="session")
def app(make_app: Callable[..., Flask]) -> Flask:
    """The app with the default test settings."""
    return make_app()


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    return app.test_client()


@pytest.fixture
def ctx(app: Flask) -> Iterator[Flask]:
    """An application context (for calling services and querying models directly)."""
    with app.app_context():
        yield app


@pytest.fixture(scope="session")
def cleanup_engine(backends: Backends) -> Iterator[Engine]:
    """An engine of the test's own, for emptying the tables between tests."""
    engine = make_engine(backends.database_url)
    yield engine
    engine.dispose()


@pytest.fixture(autouse=True)
def _isolation(request: pytest.FixtureRequest, backends: Backends, cleanup_engine: Engine) -> Iterator[None]:
    """Every test starts from empty tables and an empty namespace (Celery's own keys kept)."""
    yield
    if "app" not in request.fixturenames and "make_app" not in request.fixturenames:
        return
    db.session.remove()
    for built in _BUILT_APPS:
        built.extensions["db"].engine.dispose()  # closes idle connections; busy ones close when returned
    engine = cleanup_engine
    tables = [t.name for t in Base.metadata.sorted_tables]
    if backends.is_postgres:
        # The session worker may still be finishing the test's tasks: its transaction can hold one
        # table while waiting for another this TRUNCATE already holds, and PostgreSQL then aborts
        # one of the two. Try again; the worker's transaction ends in the meantime.
        for attempt in range(5):
            try:
                with engine.begin() as conn:
                    conn.execute(text(f"TRUNCATE {', '.join(tables)} RESTART IDENTITY CASCADE"))
                break
            except OperationalError as exc:
                if attempt == 4 or getattr(exc.orig, "pgcode", None) != "40P01":  # deadlock_detected
                    raise
    else:
        with engine.begin() as conn:
            for name in reversed(tables):
                conn.execute(text(f"DELETE FROM {name}"))
    keep = tuple(f"{backends.namespace}:{p}".encode() for p in ("celery", "_kombu", "unacked", "health"))
    with redis.Redis.from_url(backends.redis_url) as client:
        for key in client.scan_iter(f"{backends.namespace}:*", count=1000):
            if not key.startswith(keep):
                client.delete(key)


def _ping_worker(app: Flask, timeout: float = 2.0) -> bool:
    try:
        result = app.extensions["celery"].send_task("health.ping", args=["ready"])
        return bool(result.get(timeout=timeout))
    except Exception:
        return False


@pytest.fixture(scope="session")
def worker_factory(app: Flask, backends: Backends, service_env: dict[str, str], run_dir: Path) -> Iterator[
    Callable[..., ServiceProcess]
]:
    """Start real ``celery worker`` processes on the test backends; all stopped at session end."""
    started: list[ServiceProcess] = []

    def start(concurrency: int = 2, wait: bool = True, **env: str) -> ServiceProcess:
        name = f"worker-{len(started) + 1}"
        proc = ServiceProcess(
            name, worker_command(concurrency), backends.env(**{**service_env, **env}), run_dir / f"{name}.log"
        ).start()
        started.append(proc)
        if wait:
            try:
                wait_until(lambda: not proc.running or _ping_worker(app), timeout=60, interval=0.2)
            finally:
                if not proc.running:
                    raise RuntimeError(f"{name} exited:\n{proc.output()[-3000:]}")
        return proc

    yield start
    for proc in started:
        proc.stop()


@pytest.fixture(scope="session")
def worker(worker_factory: Callable[..., ServiceProcess]) -> ServiceProcess:
    """One real Celery worker process for the whole session."""
    return worker_factory()


@pytest.fixture(scope="session")
def live_server(
    worker: ServiceProcess, backends: Backends, service_env: dict[str, str], run_dir: Path
) -> Iterator[str]:
    """The service under gunicorn on a free port (with the session worker); yields its base URL."""
    import urllib.request

    port = free_port()
    proc = ServiceProcess(
        "web", web_command(port), backends.env(**{**service_env, "PUBLIC_BASE_URL": f"http://127.0.0.1:{port}"}),
        run_dir / "web.log",
    ).start()
    base = f"http://127.0.0.1:{port}"

    def up() -> bool:
        if not proc.running:
            raise RuntimeError(f"gunicorn exited:\n{proc.output()[-3000:]}")
        try:
            with urllib.request.urlopen(base + "/marketplace/test", timeout=1) as response:
                return response.status == 200
        except OSError:
            return False

    wait_until(up, timeout=30, interval=0.2)
    yield base
    proc.stop()


@pytest.fixture
def admin_headers(service_env: dict[str, str]) -> dict[str, str]:
    """Headers carrying the configured admin API key."""
    return {"X-API-Key": service_env["ADMIN_API_KEY"]}


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if not os.path.exists("/usr/bin/chromium"):
        for item in items:
            if "e2e" in str(item.fspath):
                item.add_marker(pytest.mark.skip(reason="chromium is not installed"))


@pytest.fixture
def company_factory(ctx: Flask) -> Callable[..., Any]:
    """``company_factory(**fields)`` → a committed company with its api_key, token and webhook URL."""
    from tests.factories import make_company

    return make_company
