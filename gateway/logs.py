"""Structured logs (structlog), one line per event, with secrets scrubbed before rendering: readable
lines on a terminal, JSON lines otherwise (``logging.format``)."""

from __future__ import annotations

import logging
import re
import sys
from collections.abc import MutableMapping
from typing import Any

import orjson
import structlog

_SECRET_KEYS = {"authorization", "api_key", "apikey", "key", "password", "token", "x-api-key", "admin_key"}
_BEARER = re.compile(r"(?i)(bearer\s+|sk-[a-z]*-?)[A-Za-z0-9_\-\.]{6,}")


def _scrub(_: Any, __: str, event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    """Never let a key or an Authorization value reach a log line, whatever a caller passed."""
    for name in list(event):
        if name.lower() in _SECRET_KEYS:
            event[name] = "[redacted]"
        elif isinstance(event[name], str) and ("sk-" in event[name] or "earer " in event[name]):
            event[name] = _BEARER.sub(r"\1[redacted]", event[name])
    return event


def _dumps(obj: Any, default: Any = None) -> str:
    return orjson.dumps(obj, default=default).decode()


def renderer(fmt: str = "auto", stream: Any = None) -> Any:
    """The last processor: ``console`` (colours on a terminal), ``json``, or ``auto`` (console when
    ``stream``, where the lines go, is a terminal)."""
    stream = stream or sys.stdout
    tty = bool(getattr(stream, "isatty", lambda: False)())
    if fmt == "console" or (fmt == "auto" and tty):
        return structlog.dev.ConsoleRenderer(colors=tty)
    return structlog.processors.JSONRenderer(serializer=_dumps)


def configure(level: str = "info", fmt: str = "auto") -> None:
    """Route structlog to stdout (see :func:`renderer`); called once per process at start."""
    numeric = getattr(logging, level.upper(), logging.INFO)
    logging.basicConfig(level=numeric, stream=sys.stdout, format="%(message)s")
    structlog.configure(
        processors=[
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            _scrub,
            structlog.processors.format_exc_info,
            renderer(fmt, sys.stdout),
        ],
        wrapper_class=structlog.make_filtering_bound_logger(numeric),
        logger_factory=structlog.PrintLoggerFactory(sys.stdout),
        cache_logger_on_first_use=True,
    )


def get_logger(name: str) -> Any:
    return structlog.get_logger(name)
