"""Logging: JSON lines in production, readable text in development; context ids; secrets masked.

Every line carries ``request_id`` (the HTTP request that started the work, carried into the tasks
it enqueued), and inside a task ``task_id`` and ``task_name``. A redaction filter masks API keys,
JWTs, ``secret=``/token values, the configured secrets and phone numbers before any handler
writes a line.
"""

from __future__ import annotations

import json
import logging
import re
import sys
from collections.abc import Iterable
from contextvars import ContextVar, Token
from datetime import UTC, datetime
from typing import Any

from services.phones import mask_phone
from services.platform.settings import Settings
from services.platform.text import CONTROL

CONTEXT_FIELDS = ("request_id", "task_id", "task_name")
_context: ContextVar[dict[str, str] | None] = ContextVar("log_context", default=None)


def _bound() -> dict[str, str]:
    return _context.get() or {}


def bind(**fields: str | None) -> Token[dict[str, str] | None]:
    """Add ``fields`` (request_id, task_id, task_name) to every line logged in this context."""
    merged = {**_bound(), **{k: str(v) for k, v in fields.items() if v}}
    return _context.set(merged)


def unbind(token: Token[dict[str, str] | None]) -> None:
    """Restore the context as it was before the matching ``bind``."""
    try:
        _context.reset(token)
    except ValueError:  # bound in another context (a thread that ended differently): start clean
        _context.set(None)


def current(name: str) -> str | None:
    """The bound value of ``name`` (e.g. ``request_id``), if any."""
    return _bound().get(name)


def current_request_id() -> str | None:
    """The request id of the work being done (HTTP request or a task it enqueued)."""
    return current("request_id")


# --- redaction ---------------------------------------------------------------------------------

_JWT = re.compile(r"\beyJ[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]*")
_API_KEY = re.compile(r"\bsk_[A-Za-z0-9_-]{6,}")
_NAMED_VALUE = re.compile(
    r"(?i)(\b(?:secret|token|partner_token|user_token|api_key|apikey|password|passwd|hmac|user_data_sign)"
    r"\b[\"']?\s*[:=]\s*[\"']?)([^\s&\"',;}]{4,})"
)
_BEARER = re.compile(r"(?i)(\bBearer\s+)([A-Za-z0-9._~+/=-]{8,})")
# International numbers (+ and 10-15 digits, separators allowed), Russian 11-digit numbers and
# WhatsApp chat ids (digits@c.us); bare ids and timestamps are left alone.
_PHONE = re.compile(
    r"(?<![\w+])(?:\+\d(?:[ ()-]{0,2}\d){9,14}|[78]\d{10}(?!\d)|\d{10,15}(?=@(?:c\.us|s\.whatsapp\.net)))(?![\w])"
)


def mask(value: str, keep: int = 6) -> str:
    """The first ``keep`` characters of a secret and an ellipsis (``sk_abc…``)."""
    return value[:keep] + "…"



class Redactor:
    """Masks every secret-looking substring of a text, and the configured secret values."""

    def __init__(self, secrets: Iterable[str | None] = ()) -> None:
        self.secrets = sorted({s for s in secrets if s and len(s) >= 6}, key=len, reverse=True)

    def __call__(self, text: str) -> str:
        for secret in self.secrets:
            if secret in text:
                text = text.replace(secret, mask(secret, 3))
        text = _JWT.sub(lambda m: mask(m.group(0), 8), text)
        text = _API_KEY.sub(lambda m: mask(m.group(0)), text)
        text = _BEARER.sub(lambda m: m.group(1) + mask(m.group(2), 4), text)
        text = _NAMED_VALUE.sub(lambda m: m.group(1) + ("…" if "…" in m.group(2) else mask(m.group(2), 3)), text)
        return _PHONE.sub(lambda m: mask_phone(m.group(0)), text)


_STANDARD_ATTRS = set(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message", "asctime"}


class RedactingFilter(logging.Filter):
    """Rewrites each record's message, traceback and extra fields with secrets masked."""

    def __init__(self, redactor: Redactor) -> None:
        super().__init__()
        self.redactor = redactor

    def filter(self, record: logging.LogRecord) -> bool:
        record.msg = self.redactor(record.getMessage())
        record.args = None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = self.redactor(record.exc_text)
        if record.stack_info:
            record.stack_info = self.redactor(record.stack_info)
        for name, value in list(vars(record).items()):
            if name not in _STANDARD_ATTRS and not name.startswith("_"):
                setattr(record, name, self._redact(value))
        return True

    def _redact(self, value: Any) -> Any:
        if isinstance(value, str):
            return self.redactor(value)
        if isinstance(value, dict):
            return {k: self._redact(v) for k, v in value.items()}
        if isinstance(value, list | tuple):
            return [self._redact(v) for v in value]
        return value


class ContextFilter(logging.Filter):
    """Copies the bound request_id / task_id / task_name onto each record."""

    def filter(self, record: logging.LogRecord) -> bool:
        bound = _bound()
        for name in CONTEXT_FIELDS:
            if getattr(record, name, None) is None:
                setattr(record, name, bound.get(name))
        return True


# --- one record, one line -----------------------------------------------------------------------

def escape_controls(text: str) -> str:
    """``text`` with every control character written as an escape (``\\n``, ``\\x1b``, ``\\u2028``)."""
    return CONTROL.sub(lambda m: m.group(0).encode("unicode_escape").decode("ascii"), text)


def _extras(record: logging.LogRecord) -> dict[str, Any]:
    return {
        k: v for k, v in vars(record).items()
        if k not in _STANDARD_ATTRS and k not in CONTEXT_FIELDS and not k.startswith("_")
    }


class JsonFormatter(logging.Formatter):
    """One JSON object per line, with the fields a log pipeline indexes."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        for name in CONTEXT_FIELDS:
            value = getattr(record, name, None)
            if value:
                entry[name] = value
        entry.update(_extras(record))
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            entry["exc"] = record.exc_text
        # json.dumps escapes C0 controls; C1 controls and U+2028/9 it writes as they are.
        text = json.dumps(entry, ensure_ascii=False, default=str)
        return CONTROL.sub(lambda m: f"\\u{ord(m.group(0)):04x}", text)


class TextFormatter(logging.Formatter):
    """``time LEVEL logger [request_id task_name] message`` for a terminal.

    A record is one line: control characters in the message are escaped, so a request path with
    ``%0a`` cannot start a forged line. A traceback keeps its lines, each indented, with control
    characters inside them escaped, so no line of it can pass for a record of its own.
    """

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s%(context)s: %(message)s")

    def formatMessage(self, record: logging.LogRecord) -> str:  # noqa: N802 - logging's naming
        record.message = escape_controls(record.message)
        return super().formatMessage(record)

    def format(self, record: logging.LogRecord) -> str:
        ids = [getattr(record, name, None) for name in CONTEXT_FIELDS if name != "task_id"]
        record.context = " [" + " ".join(i for i in ids if i) + "]" if any(ids) else ""
        first, *rest = super().format(record).split("\n")
        return "\n".join([first, *("    " + escape_controls(line) for line in rest)])


def _configured_secrets(settings: Settings) -> list[str | None]:
    flower_password = (settings.flower_basic_auth or "").partition(":")[2]
    return [
        settings.secret_key,
        settings.admin_api_key,
        settings.metrics_token,
        settings.yclients_partner_token,
        settings.waha_api_key,
        settings.waha_webhook_hmac_key,
        flower_password,
    ]


def configure_logging(settings: Settings) -> None:
    """Install one handler on the root logger (idempotent) with context and redaction filters."""
    root = logging.getLogger()
    handler = next((h for h in root.handlers if getattr(h, "_ycwa", False)), None)
    if handler is None:
        handler = logging.StreamHandler(sys.stderr)
        handler._ycwa = True  # type: ignore[attr-defined]
        root.addHandler(handler)
    handler.filters = [ContextFilter(), RedactingFilter(Redactor(_configured_secrets(settings)))]
    handler.setFormatter(JsonFormatter() if settings.log_as_json else TextFormatter())
    root.setLevel(settings.log_level.upper())
