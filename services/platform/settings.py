"""Typed configuration read from the environment, validated once at start-up."""

from __future__ import annotations

import os
import sys
from functools import lru_cache
from typing import Literal

from pydantic import Field, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

DEV_SECRET = "dev-insecure-secret-change-me-0123456789"


class ConfigError(SystemExit):
    """A missing or malformed setting: exits with a readable message instead of a traceback.

    The exit status is 3, which gunicorn reads as "worker failed to boot" and stops instead of
    respawning the worker forever.
    """

    EXIT_STATUS = 3

    def __init__(self, message: str) -> None:
        self.message = f"configuration error: {message}"
        print(self.message, file=sys.stderr, flush=True)
        super().__init__(self.EXIT_STATUS)


class Settings(BaseSettings):
    """Every setting of the service; names are the environment variables (case-insensitive)."""

    model_config = SettingsConfigDict(env_file=".env", extra="ignore", case_sensitive=False)

    app_env: Literal["development", "production", "test"] = "development"
    database_url: str = "sqlite:///var/app.db"
    # Per process: connections kept open, and how many more a burst may open (PostgreSQL only).
    database_pool_size: int = Field(10, ge=1)
    database_max_overflow: int = Field(20, ge=0)
    redis_url: str = "redis://127.0.0.1:6379/0"
    redis_namespace: str = Field("ycwa", pattern=r"^[A-Za-z0-9_.-]+$")
    secret_key: str = DEV_SECRET
    jwt_ttl_seconds: int = Field(24 * 3600, gt=0)
    salon_session_ttl_seconds: int = Field(2 * 3600, ge=60)
    admin_api_key: str | None = None
    public_base_url: str = "http://localhost:3000"
    trusted_proxies: int = Field(0, ge=0)
    ratelimit_enabled: bool = True
    ratelimit_public: str = "60/minute"
    ratelimit_protected: str = "120/minute"
    ratelimit_websocket: str = "5/minute"
    # Each open socket holds a gunicorn thread: keep this below GUNICORN_THREADS so HTTP keeps threads.
    websocket_max_per_process: int = Field(480, ge=1)
    # Origins allowed to open Socket.IO connections from a browser: comma-separated, "*" for any; empty = the
    # service's own origin only (clients outside a browser send no Origin and are not affected).
    socketio_cors_origins: str = ""

    yclients_api_url: str = "https://api.yclients.com"
    yclients_partner_token: str | None = None
    yclients_application_id: int | None = None
    yclients_timeout_seconds: float = Field(10.0, gt=0)
    callback_max_attempts: int = Field(8, ge=1)
    callback_wait_seconds: float = Field(5.0, ge=0)
    callback_retry_base_seconds: float = Field(5.0, gt=0)
    callback_retry_max_seconds: float = Field(3600.0, gt=0)
    install_replay_ttl_seconds: int = Field(7 * 24 * 3600, gt=0)

    whatsapp_gateway: Literal["simulator", "evolution", "waha"] = "simulator"
    evolution_url: str = "http://127.0.0.1:8080"
    evolution_api_key: str | None = None
    evolution_timeout_seconds: float = Field(10.0, gt=0)
    waha_url: str = "http://127.0.0.1:3001"
    waha_api_key: str | None = None
    waha_webhook_hmac_key: str | None = None
    waha_timeout_seconds: float = Field(10.0, gt=0)
    # A session that fails and is WORKING again within this many seconds was not disconnected.
    whatsapp_disconnect_debounce_seconds: float = Field(30.0, ge=0)
    # Reconciliation asks the gateway about a WORKING session that has been quiet this long.
    whatsapp_quiet_check_seconds: float = Field(900.0, gt=0)
    simulator_qr_first_ttl: float = Field(60.0, gt=0)
    simulator_qr_ttl: float = Field(20.0, gt=0)
    simulator_qr_count: int = Field(6, ge=1)
    # How long the simulated gateway takes to answer a send (the text has reached WhatsApp by then).
    simulator_send_seconds: float = Field(0.0, ge=0)
    qr_wait_seconds: float = Field(8.0, ge=0)

    # Messaging a salon's clients (services/messaging): pacing per connected number, typing, retries.
    whatsapp_max_per_minute: float = Field(4.0, gt=0)
    whatsapp_daily_cap: int = Field(300, ge=1)
    whatsapp_typing_ms_per_char: float = Field(40.0, ge=0)
    whatsapp_typing_max_seconds: float = Field(6.0, ge=0)
    messaging_max_attempts: int = Field(5, ge=1)
    # A message left "sending" this long (its worker died mid-send) is failed, never re-sent blindly.
    messaging_sending_lease_seconds: float = Field(600.0, gt=0)
    # How often beat looks for due messages (the due query runs once per tick).
    messaging_tick_seconds: float = Field(5.0, gt=0)

    webhook_max_body_bytes: int = Field(256 * 1024, gt=0)
    # Concurrent deliveries share one INSERT and one commit (services/webhooks/writer.py); unset = on
    # for PostgreSQL, off for SQLite (each request then stores its own delivery).
    webhook_group_commit: bool | None = None
    webhook_max_attempts: int = Field(8, ge=1)
    webhook_retry_base_seconds: float = Field(5.0, gt=0)
    webhook_retry_max_seconds: float = Field(3600.0, gt=0)
    webhook_processing_timeout_seconds: float = Field(360.0, gt=0)
    webhook_sweep_after_seconds: float = Field(10.0, ge=0)
    webhook_rejected_retention_hours: float = Field(72.0, gt=0)
    # Deliveries the database cannot take wait in an SQLite file here (services/webhooks/spool.py): a volume.
    webhook_spool_dir: str = "var/spool"
    webhook_spool_max_bytes: int = Field(512 * 1024 * 1024, gt=0)

    celery_visibility_timeout: int = Field(3600, gt=0)
    celery_worker_concurrency: int = Field(2, ge=1)
    pubsub_backend: Literal["redis", "memory"] = "redis"

    log_format: Literal["json", "text"] | None = None
    log_level: str = "INFO"
    metrics_token: str | None = None
    flower_basic_auth: str | None = None

    @field_validator("redis_url")
    @classmethod
    def _redis_scheme(cls, value: str) -> str:
        if not value.startswith(("redis://", "rediss://", "unix://")):
            raise ValueError("must start with redis://, rediss:// or unix://")
        return value

    @field_validator("database_url")
    @classmethod
    def _database_scheme(cls, value: str) -> str:
        value = normalise_database_url(value)
        if not value.startswith(("postgresql", "sqlite")):
            raise ValueError("must be a postgresql:// or sqlite:// URL")
        return normalise_database_url(value)

    @model_validator(mode="after")
    def _production_requirements(self) -> Settings:
        if self.app_env == "production":
            if self.secret_key == DEV_SECRET or len(self.secret_key) < 32:
                raise ValueError("SECRET_KEY must be set to at least 32 characters in production")
            if self.database_url.startswith("sqlite"):
                raise ValueError("DATABASE_URL must point at PostgreSQL in production")
        if self.whatsapp_gateway == "evolution" and not self.evolution_api_key:
            raise ValueError("EVOLUTION_API_KEY must be set with WHATSAPP_GATEWAY=evolution")
        return self

    @property
    def socketio_origins(self) -> str | list[str] | None:
        """``SOCKETIO_CORS_ORIGINS`` as python-socketio takes it: None (same origin), "*" or a list."""
        origins = [o.strip() for o in self.socketio_cors_origins.split(",") if o.strip()]
        if "*" in origins:
            return "*"
        return origins or None

    @property
    def log_as_json(self) -> bool:
        """JSON logs unless told otherwise in production; readable text in development."""
        if self.log_format is not None:
            return self.log_format == "json"
        return self.app_env == "production"

    def key(self, *parts: object) -> str:
        """A Redis key or channel inside this deployment's namespace."""
        return ":".join([self.redis_namespace, *map(str, parts)])


def normalise_database_url(url: str) -> str:
    """Pin plain ``postgresql://`` URLs to psycopg2, the driver this service ships with."""
    if url.startswith("postgres://"):
        url = "postgresql://" + url.removeprefix("postgres://")
    if url.startswith("postgresql://"):
        url = "postgresql+psycopg2://" + url.removeprefix("postgresql://")
    return url


# Written by ``make run``: where its embedded Redis and SQLite file are, and the secrets it generated,
# so a command run from another terminal in development (``flask --app wsgi …``) reaches the same stack.
DEVSTACK_ENV_FILE = "var/devstack.env"


def _env_files() -> tuple[str, ...]:
    if os.environ.get("APP_ENV", "development") == "development" and os.path.exists(DEVSTACK_ENV_FILE):
        return (DEVSTACK_ENV_FILE, ".env")  # .env and the real environment take precedence
    return (".env",)


def load_settings(**overrides: object) -> Settings:
    """Read and validate the settings; a bad environment ends the process with a clear message."""
    try:
        return Settings(_env_file=_env_files(), **overrides)  # type: ignore[arg-type]
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(map(str, err['loc'])).upper() or 'settings'}: {err['msg']}" for err in exc.errors()
        )
        raise ConfigError(problems) from None


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings, for code that runs outside an app (Celery config, CLI helpers)."""
    return load_settings()
