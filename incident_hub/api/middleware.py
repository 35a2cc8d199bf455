"""Pure ASGI middleware (cheaper than BaseHTTPMiddleware on the hot path): body size limit, metrics, and
the direct road for vendor webhooks."""

from __future__ import annotations

import json
import time
from collections.abc import Awaitable, Callable
from typing import Any

from fastapi.routing import APIRoute
from prometheus_client import Counter, Histogram
from starlette._utils import get_route_path, is_async_callable
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from incident_hub.metrics import HTTP_LATENCY, HTTP_REQUESTS


class _TooLarge(HTTPException):
    # An HTTPException, so FastAPI's body reader lets it through (it turns other errors into a 400) and the
    # app's problem handler answers 413.
    def __init__(self, limit: int) -> None:
        super().__init__(413, f"request body exceeds {limit} bytes")


async def _send_413(send: Send, path: str, limit: int) -> None:
    body = json.dumps(
        {
            "type": "about:blank",
            "title": "Content too large",
            "status": 413,
            "detail": f"request body exceeds {limit} bytes",
            "instance": path,
        }
    ).encode()
    await send(
        {
            "type": "http.response.start",
            "status": 413,
            "headers": [
                (b"content-type", b"application/problem+json"),
                (b"content-length", str(len(body)).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


class BodyLimit:
    """Refuse request bodies over `limit` bytes with a 413, whether or not Content-Length says so."""

    def __init__(self, app: ASGIApp, limit: int) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        for name, value in scope["headers"]:
            if name == b"content-length" and value.isdigit():
                if int(value) > self.limit:
                    await _send_413(send, scope["path"], self.limit)
                    return
                # The server reads exactly Content-Length bytes of body (HTTP framing): nothing more to
                # count, and the request goes on unwrapped.
                await self.app(scope, receive, send)
                return
        await self._counted(scope, receive, send)

    async def _counted(self, scope: Scope, receive: Receive, send: Send) -> None:
        """A body without a length (chunked): count it as it arrives."""
        seen = 0
        started = False

        async def limited_receive() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.limit:
                    raise _TooLarge(self.limit)
            return message

        async def tracking_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, limited_receive, tracking_send)
        except _TooLarge:
            if not started:
                await _send_413(send, scope["path"], self.limit)


class Metrics:
    """Count requests and time them, labelled by route template (not raw path: ids would explode it)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        # The labelled children, found once per (method, route, status): `labels()` validates and locks.
        self._counters: dict[tuple[str, str, int], Counter] = {}
        self._timers: dict[tuple[str, str], Histogram] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def recording_send(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, recording_send)
        finally:
            route: Any = scope.get("route")
            template = getattr(route, "path", None) or "unmatched"
            method = scope["method"]
            counter = self._counters.get((method, template, status))
            if counter is None:
                counter = HTTP_REQUESTS.labels(method, template, str(status))
                self._counters[method, template, status] = counter
            timer = self._timers.get((method, template))
            if timer is None:
                timer = self._timers[method, template] = HTTP_LATENCY.labels(method, template)
            counter.inc()
            timer.observe(time.perf_counter() - started)


class DirectRoute:
    """Answer one route's requests by calling its endpoint directly, ahead of the app's routing.

    For the route vendors call far more often than people call the API (webhooks): FastAPI matches a path
    against each route in turn, and the endpoint needs none of its parameter resolution. The route stays
    registered (the OpenAPI document lists it; other methods on its path are answered as before), the
    middleware outside this one sees the same scope (`route` for metrics), and an exception the endpoint
    raises is answered by the app's own handler for it, as the router would have."""

    def __init__(
        self,
        app: ASGIApp,
        route: APIRoute,
        endpoint: Callable[[Request], Awaitable[Response]],
    ) -> None:
        self.app = app
        self.route = route
        self.endpoint = endpoint
        self.methods = frozenset(route.methods or ())
        # Every path the route matches starts with its text up to the first parameter: most requests are
        # told apart by that alone.
        self.prefix = route.path_format.split("{", 1)[0]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] not in self.methods:
            await self.app(scope, receive, send)
            return
        path = get_route_path(scope)
        match = self.route.path_regex.match(path) if path.startswith(self.prefix) else None
        if match is None:
            await self.app(scope, receive, send)
            return
        convertors = self.route.param_convertors
        params = match.groupdict()
        scope["path_params"] = {name: convertors[name].convert(value) for name, value in params.items()}
        scope["route"] = self.route
        scope["endpoint"] = self.route.endpoint
        request = Request(scope, receive)
        try:
            response = await self.endpoint(request)
        except Exception as error:
            handler = _handler(scope, error)
            if handler is None:
                raise  # to the server-error middleware outside, as from the router
            if is_async_callable(handler):
                response = await handler(request, error)
            else:
                response = await run_in_threadpool(handler, request, error)
        await response(scope, receive, send)


def _handler(scope: Scope, error: Exception) -> Callable[[Request, Exception], Any] | None:
    """The app's exception handler for `error`, as Starlette's ExceptionMiddleware picks it (by status for
    an HTTPException, else by the error's class and its bases); the catch-all (`Exception`, 500) is left to
    the server-error middleware, as there."""
    handlers: dict[Any, Any] = getattr(scope.get("app"), "exception_handlers", {})
    if isinstance(error, HTTPException) and error.status_code in handlers:
        return handlers[error.status_code]  # type: ignore[no-any-return]
    for kind in type(error).__mro__:
        if kind is Exception:
            return None
        if kind in handlers:
            return handlers[kind]  # type: ignore[no-any-return]
    return None
