"""Logging: JSON lines in production, readable text in development."""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime

from services.settings import Settings


class JsonFormatter(logging.Formatter):
    """One JSON object per line, with the fields a log pipeline indexes."""

    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False)


def configure_logging(settings: Settings) -> None:
    """Install one handler on the root logger (idempotent)."""
    root = logging.getLogger()
    handler = next((h for h in root.handlers if getattr(h, "_ycwa", False)), None)
    if handler is None:
        handler = logging.StreamHandler(sys.stderr)
        handler._ycwa = True  # type: ignore[attr-defined]
        root.addHandler(handler)
    if settings.log_as_json:
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root.setLevel(settings.log_level.upper())
