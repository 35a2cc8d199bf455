"""Structured logs: one JSON object (or one key=value line) per event, with the incident and delivery in
context."""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any, TextIO

from pythonjsonlogger.json import JsonFormatter

_context: ContextVar[dict[str, Any] | None] = ContextVar("incident_hub_log_context", default=None)


@contextmanager
def log_context(**values: Any) -> Iterator[None]:
    """Add `values` to every log record written inside the block (this task or thread only)."""
    token = _context.set({**(_context.get() or {}), **values})
    try:
        yield
    finally:
        _context.reset(token)


class _ContextFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        record.__dict__.pop("color_message", None)  # uvicorn's ANSI-coloured duplicate of `message`
        for key, value in (_context.get() or {}).items():
            if not hasattr(record, key):
                setattr(record, key, value)
        return True


_STANDARD = frozenset(logging.LogRecord("", 0, "", 0, "", (), None).__dict__) | {"message", "asctime"}


class KeyValueFormatter(logging.Formatter):
    """Plain-text lines with the same context as the JSON ones: `... message key=value key="two words"`."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        pairs = [
            f"{key}={_value(value)}"
            for key, value in record.__dict__.items()
            if key not in _STANDARD and not key.startswith("_")
        ]
        if not pairs:
            return line
        head, newline, trace = line.partition("\n")  # a traceback stays below the line
        return f"{head} {' '.join(pairs)}{newline}{trace}"


def _value(value: Any) -> str:
    if isinstance(value, list | tuple) and all(isinstance(v, str | int) for v in value):
        text = ",".join(str(v) for v in value)
    else:
        text = value if isinstance(value, str) else json.dumps(value, default=str)
    if text and not any(c.isspace() or c in '"=' for c in text):
        return text
    return json.dumps(text)


def configure(level: str = "INFO", *, json_lines: bool = True, stream: TextIO | None = None) -> None:
    """Send every log record, with its context, to `stream` (default: stderr) as JSON or key=value lines."""
    handler = logging.StreamHandler(stream or sys.stderr)
    if json_lines:
        handler.setFormatter(
            JsonFormatter(
                "%(levelname)s %(name)s %(message)s",
                rename_fields={"levelname": "level"},
                timestamp="time",  # ISO 8601, UTC
            )
        )
    else:
        handler.setFormatter(KeyValueFormatter())
    handler.addFilter(_ContextFilter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    for noisy in ("httpx", "httpcore", "uvicorn.access"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
