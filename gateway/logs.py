"""Structured logs (structlog), one line per event, with secrets scrubbed from the rendered line: JSON
lines, or readable lines on a terminal (``logging.format``).

Scrubbing the rendered line (rather than the values a caller passed) covers every string, nested or not,
exception text included, in the escaping the line itself uses; aiohttp's own stdlib log records go
through the same scrubber.
"""

from __future__ import annotations

import logging
import re
import sys
from collections.abc import MutableMapping
from typing import Any

import orjson
import structlog

from gateway.redact import MASK, everywhere
from gateway.telemetry import add_trace_id

_SECRET_KEYS = {"authorization", "api_key", "apikey", "key", "password", "token", "x-api-key", "admin_key"}
_BEARER = re.compile(r"(?i)(bearer\s+|(?<![a-z0-9])sk-[a-z]*-?)[A-Za-z0-9_\-\.]{6,}")


def _hide_named(_: Any, __: str, event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    """Values under a secret-sounding name (``authorization``, ``api_key``...) are never logged."""
    for name, value in event.items():
        if name.lower() in _SECRET_KEYS:
            event[name] = MASK
        elif isinstance(value, dict):
            _hide_named(_, __, value)
    return event


def scrub(text: str) -> str:
    """``text`` without any provider secret (in any escaping) and without anything that looks like a
    key or a Bearer token."""
    text = everywhere().text(text)
    if "sk-" in text or "earer " in text or "EARER " in text:
        text = _BEARER.sub(rf"\1{MASK}", text)
    return text


def _dumps(obj: Any, default: Any = None) -> str:
    return scrub(orjson.dumps(obj, default=default).decode())


class _ScrubRecords(logging.Filter):
    """The same scrubbing for stdlib records (aiohttp's errors and tracebacks)."""

    _formatter = logging.Formatter()

    def filter(self, record: logging.LogRecord) -> bool:
        record.msg, record.args = scrub(record.getMessage()), None
        if record.exc_info:
            record.exc_text = scrub(self._formatter.formatException(record.exc_info))
            record.exc_info = None
        if record.stack_info:
            record.stack_info = scrub(record.stack_info)
        return True


def processors(fmt: str = "json", stream: Any = None) -> list[Any]:
    """The structlog chain: level, time, trace id, named secrets hidden, exception text, a scrubbed
    rendering."""
    return [
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        add_trace_id,
        _hide_named,
        structlog.processors.format_exc_info,
        renderer(fmt, stream),
    ]


class _ScrubbedConsole(structlog.dev.ConsoleRenderer):
    """structlog's readable renderer, its line scrubbed like the JSON one."""

    def __call__(self, logger: Any, name: str, event: MutableMapping[str, Any]) -> str:
        return scrub(super().__call__(logger, name, event))


def renderer(fmt: str = "auto", stream: Any = None) -> Any:
    """The last processor: ``console`` (colours on a terminal), ``json``, or ``auto`` (console when
    ``stream``, where the lines go, is a terminal)."""
    stream = stream or sys.stdout
    tty = bool(getattr(stream, "isatty", lambda: False)())
    if fmt == "console" or (fmt == "auto" and tty):
        return _ScrubbedConsole(colors=tty)
    return structlog.processors.JSONRenderer(serializer=_dumps)


def configure(level: str = "info", fmt: str = "auto") -> None:
    """Route structlog to stdout (see :func:`renderer`); called once per process at start."""
    numeric = getattr(logging, level.upper(), logging.INFO)
    logging.basicConfig(level=numeric, stream=sys.stdout, format="%(message)s")
    for handler in logging.getLogger().handlers:
        handler.addFilter(_ScrubRecords())
    structlog.configure(
        processors=processors(fmt, sys.stdout),
        wrapper_class=structlog.make_filtering_bound_logger(numeric),
        logger_factory=structlog.PrintLoggerFactory(sys.stdout),
        cache_logger_on_first_use=True,
    )


def get_logger(name: str) -> Any:
    return structlog.get_logger(name)
