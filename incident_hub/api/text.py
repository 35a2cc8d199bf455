"""Text the databases can store: PostgreSQL holds no NUL character (U+0000) in text, so a request carrying
one in its path, its query or its body is refused with a 422 at the edge, on both databases alike, before
it reaches a query (where PostgreSQL would fail it with a 500 and SQLite would store it)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from urllib.parse import parse_qsl

from fastapi import Request
from fastapi.exceptions import RequestValidationError
from starlette.types import ASGIApp, Receive, Scope, Send

from incident_hub.api.problems import problem

REASON = "text cannot contain the NUL character (U+0000)"


class RefuseNul:
    """Answer 422 to a request whose path or query holds a NUL character (`%00`)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            where = _nul_in_url(scope)
            if where is not None:
                response = problem(422, "Invalid request", f"{where}: {REASON}", Request(scope))
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)


def _nul_in_url(scope: Scope) -> str | None:
    if "\x00" in scope["path"]:
        return "path"
    query: bytes = scope.get("query_string", b"")
    if b"%00" not in query and b"\x00" not in query:
        return None
    for name, value in parse_qsl(query.decode("latin-1"), keep_blank_values=True):
        if "\x00" in name or "\x00" in value:
            return f"query parameter {name.replace(chr(0), '')!r}"
    return None


_FORMS = ("application/x-www-form-urlencoded", "multipart/form-data")


async def refuse_nul_in_body(request: Request) -> None:
    """A dependency of every route: 422 naming the first field whose text holds a NUL character (a JSON
    `\\u0000`, a form's `%00`), or the body itself when it holds a NUL byte (a YAML document)."""
    if request.headers.get("content-type", "").lower().startswith(_FORMS):
        # Read as a form (kept by the request: the route reads it again for free), not as bytes.
        form = await request.form()
        for name, value in form.multi_items():
            if "\x00" in name or (isinstance(value, str) and "\x00" in value):
                raise RequestValidationError(
                    [{"loc": ("body", name.replace("\x00", "")), "msg": REASON, "type": "string_nul"}]
                )
        return
    body = await request.body()  # kept by the request: the route reads it again for free
    if b"\\u0000" not in body and b"\x00" not in body:
        return
    where: tuple[str | int, ...] | None = ("body",)
    if b"\x00" not in body:
        try:
            document = json.loads(body)
        except ValueError:
            return  # not JSON: the route answers that
        where = next((("body", *path) for path in _nul_paths(document, ())), None)
    if where is not None:
        raise RequestValidationError([{"loc": where, "msg": REASON, "type": "string_nul"}])


def _nul_paths(value: object, path: tuple[str | int, ...]) -> Iterator[tuple[str | int, ...]]:
    if isinstance(value, str):
        if "\x00" in value:
            yield path
    elif isinstance(value, dict):
        for key, item in value.items():
            if "\x00" in key:
                yield (*path, key.replace("\x00", ""))
            yield from _nul_paths(item, (*path, key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from _nul_paths(item, (*path, index))
