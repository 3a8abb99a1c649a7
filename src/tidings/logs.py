"""Structured logs: JSON lines in production, readable lines in development; context rides in `extra`.

Never log a token or a payload body at info level: callers pass ids, counts and reasons only.
"""

from __future__ import annotations

import logging
import sys
from datetime import UTC, datetime
from typing import Any

import orjson

from .config import Settings

_STANDARD = frozenset(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {
    "message",
    "asctime",
    "taskName",
    "color_message",
}


def _context(record: logging.LogRecord) -> dict[str, Any]:
    return {k: v for k, v in vars(record).items() if k not in _STANDARD}


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
            **_context(record),
        }
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return orjson.dumps(entry, default=str).decode()


class TextFormatter(logging.Formatter):
    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)-7s %(name)s: %(message)s", "%H:%M:%S")

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        context = _context(record)
        return line + (" " + " ".join(f"{k}={v}" for k, v in context.items()) if context else "")


class _DropIntendedAborts(logging.Filter):
    """uvicorn reports a stream we cut off (a slow client) as an error; it is intended, and already logged."""

    def filter(self, record: logging.LogRecord) -> bool:
        return record.getMessage() != "ASGI callable returned without completing response."


def configure_logging(settings: Settings) -> None:
    """Route tidings' and uvicorn's logs through one handler in the chosen format."""
    use_json = settings.log_format == "json" or (
        settings.log_format == "auto" and not settings.is_development
    )
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if use_json else TextFormatter())
    level = settings.log_level.upper()
    for name in ("tidings", "uvicorn", "uvicorn.error"):
        logger = logging.getLogger(name)
        logger.handlers[:] = [handler]
        logger.setLevel(level)
        logger.propagate = False
    logging.getLogger("uvicorn.error").addFilter(_DropIntendedAborts())
    logging.getLogger("uvicorn.access").setLevel(logging.WARNING)
