"""Typed failures of the core, each turned into problem+json in exactly one place (`api/problems.py`)."""

from __future__ import annotations

from typing import Any


class HubError(Exception):
    """Base of the errors the API reports; `status` is the HTTP status it maps to."""

    status = 500
    title = "Internal error"

    def __init__(self, detail: str, **extra: Any) -> None:
        super().__init__(detail)
        self.detail = detail
        self.extra = extra


class NotFound(HubError):
    status = 404
    title = "Not found"


class VersionMismatch(HubError):
    status = 412
    title = "Precondition failed"


class Conflict(HubError):
    status = 409
    title = "Conflict"


class InvalidRequest(HubError):
    status = 422
    title = "Invalid request"


class MalformedJson(HubError):
    """A request body that is not JSON at all (a 400, unlike JSON of the wrong shape: 422)."""

    status = 400
    title = "Malformed JSON"

    def __init__(self, why: str, line: int | None = None, column: int | None = None) -> None:
        where = f" at line {line} column {column}" if line is not None else ""
        super().__init__(f"malformed JSON{where}: {why}")
