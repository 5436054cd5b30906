"""Structured logs: one JSON object per line on stderr.

    {"ts": "2026-11-22T10:00:00.123Z", "level": "info", "logger": "collector.worker",
     "msg": "delivery ...", "event": "delivery", "outcome": "delivered", ...}

Fields passed with ``extra={...}`` become keys of their own, so log pipelines
can filter on ``event`` without parsing messages. What is logged never holds a
secret (tokens, webhook URLs beyond their origin, the Redis password) nor a
raw client address: the collector only ever holds salted hashes of those.
"""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime
from typing import Any

# Attributes every LogRecord has; anything else came in through ``extra``.
_STANDARD = set(logging.LogRecord("", 0, "", 0, "", None, None).__dict__) | {"message", "asctime"}


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds")
            .replace("+00:00", "Z"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        for key, value in record.__dict__.items():
            if key not in _STANDARD and not key.startswith("_") and key not in out:
                out[key] = value
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        return json.dumps(out, default=str, ensure_ascii=False)


def setup(level: str) -> None:
    """JSON lines on stderr for this process (idempotent)."""
    root = logging.getLogger()
    root.setLevel(level)
    for handler in root.handlers:
        if isinstance(handler.formatter, JsonFormatter):
            return
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter())
    root.handlers = [handler]


def gunicorn_logconfig(level: str) -> dict[str, Any]:
    """gunicorn's own messages (``gunicorn.error``) as JSON lines too; no access log."""
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"json": {"()": "collector.logs.JsonFormatter"}},
        "handlers": {"stderr": {"class": "logging.StreamHandler", "formatter": "json",
                                "stream": "ext://sys.stderr"}},
        "root": {"level": level, "handlers": ["stderr"]},
        "loggers": {
            "gunicorn.error": {"level": level, "handlers": ["stderr"], "propagate": False},
            "gunicorn.access": {"level": "CRITICAL", "handlers": [], "propagate": False},
        },
    }


def _gunicorn_logger() -> type:
    from gunicorn.glogging import Logger

    class GunicornLogger(Logger):  # type: ignore[misc]
        """gunicorn's logger without the access log (it would print client addresses)."""

        def access(self, resp: Any, req: Any, environ: Any, request_time: Any) -> None:
            return None

    return GunicornLogger


def __getattr__(name: str) -> Any:
    # Built on first use, so importing this module does not import gunicorn.
    if name == "GunicornLogger":
        return _gunicorn_logger()
    raise AttributeError(name)
