"""Secret watch, for the whole test session: no secret appears in a log record or in an answer of the hub.

Watched secrets are every value the hub, the demo and the sandboxes make with `secrets.token_urlsafe` or
`secrets.token_hex` (API keys, admin session and CSRF tokens, signing keys, sandbox webhook secrets, the
demo subscriber's secret) and every connector credential read from its environment variable or file
(`connectors.base.Secret.read`) that mixes letters and digits, as real tokens do; each 16 characters or
longer (an API key's 12-character public prefix is shown by design, and a test credential of plain words
such as "pd-webhook-secret" would be found in ordinary text). They are looked for in:

- every log record made in this process, its message, its exception and its structured fields, whatever
  handler the test installed (`Logger.makeRecord` sees them all);
- every answer of the hub's own routes (`/api/v1`, `/admin`, `/webhooks`, health and metrics) read through
  httpx or httpx2 (FastAPI's TestClient): body and headers, except two things given to their owner by
  design: a CSRF token in the page it protects (form field, htmx headers), and a session cookie in
  `Set-Cookie`. Vendor sandboxes' answers are not the hub's and are not checked.

A test during which a watched secret shows fails at teardown, naming where it showed.
"""

from __future__ import annotations

import logging
import re
import secrets
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest

from incident_hub.connectors.base import Secret

SHORTEST = 16
_WINDOW = SHORTEST
_RUN = re.compile(rf"[A-Za-z0-9_\-]{{{SHORTEST},}}")
# The CSRF token in a form's hidden field and in the page's htmx request headers.
_CSRF_FIELD = re.compile(r'(name="[^"]*csrf[^"]*"\s+value=|"[^"]*csrf[^"]*"\s*:\s*)"[^"]*"', re.IGNORECASE)
_HUB_PATHS = ("/api/v1", "/admin", "/webhooks", "/healthz", "/readyz", "/metrics")
_STANDARD = set(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message", "asctime"}


class SecretWatch:
    """The watched secrets and what was seen; `found` grows as secrets show up."""

    def __init__(self) -> None:
        self._by_window: dict[str, set[str]] = {}
        self.found: list[str] = []

    def __len__(self) -> int:
        return sum(len(values) for values in self._by_window.values())

    def watch(self, value: str) -> None:
        if len(value) >= SHORTEST:
            self._by_window.setdefault(value[:_WINDOW], set()).add(value)

    def shown_in(self, text: str) -> list[str]:
        """The watched secrets that `text` contains."""
        shown: set[str] = set()
        for run in _RUN.findall(text):
            for start in range(len(run) - _WINDOW + 1):
                for secret in self._by_window.get(run[start : start + _WINDOW], ()):
                    if secret in text:
                        shown.add(secret)
        return sorted(shown)

    def check(self, where: str, text: str) -> None:
        for secret in self.shown_in(text):
            self.found.append(f"{where}: {secret[:4]}… ({len(secret)} characters)")


def _looks_random(value: str) -> bool:
    """A configured credential made of letters and digits, as real tokens are; a test's credential made of
    plain words ("pd-webhook-secret") would be found in ordinary text such as a file name."""
    return any(c.isdigit() for c in value) and any(c.isalpha() for c in value)


def _log_text(record: logging.LogRecord) -> str:
    try:
        parts = [record.getMessage()]
    except Exception:  # a malformed record is the logging module's to report
        parts = [str(record.msg)]
    if record.exc_info and record.exc_info[1] is not None:
        parts.append(repr(record.exc_info[1]))
        parts.append(logging.Formatter().formatException(record.exc_info))
    parts.extend(repr(value) for key, value in vars(record).items() if key not in _STANDARD)
    return "\n".join(parts)


def _answer_text(response: Any) -> str:
    headers = [f"{k}: {v}" for k, v in response.headers.multi_items() if k.lower() != "set-cookie"]
    try:
        body = response.text
    except Exception:  # a streamed answer not read, or bytes that are not text
        body = ""
    return "\n".join([*headers, _CSRF_FIELD.sub(r'\1""', body)])


def _recording(make: Callable[..., str], watch: SecretWatch) -> Callable[..., str]:
    def recorded(*args: Any, **kwargs: Any) -> str:
        value = make(*args, **kwargs)
        watch.watch(value)
        return value

    return recorded


WATCH = SecretWatch()


def pytest_configure(config: pytest.Config) -> None:
    secrets.token_urlsafe = _recording(secrets.token_urlsafe, WATCH)
    secrets.token_hex = _recording(secrets.token_hex, WATCH)

    read = Secret.read

    def read_and_watch(self: Secret) -> Any:
        value = read(self)
        if _looks_random(value.get_secret_value()):
            WATCH.watch(value.get_secret_value())
        return value

    Secret.read = read_and_watch  # type: ignore[method-assign]

    make_record = logging.Logger.makeRecord

    def record_and_check(self: logging.Logger, *args: Any, **kwargs: Any) -> logging.LogRecord:
        record = make_record(self, *args, **kwargs)  # with its `extra` fields set
        WATCH.check(f"log record {record.name}", _log_text(record))
        return record

    logging.Logger.makeRecord = record_and_check  # type: ignore[method-assign]

    # FastAPI's TestClient is built on httpx2 (Starlette 1.x), the hub's own clients on httpx.
    for client in _http_clients():
        client.send = _checking(client.send)  # type: ignore[method-assign]


def _http_clients() -> list[type[Any]]:
    clients: list[type[Any]] = [httpx.Client]
    try:
        import httpx2

        clients.append(httpx2.Client)
    except ImportError:
        pass
    return clients


def _checking(send: Callable[..., Any]) -> Callable[..., Any]:
    def send_and_check(self: Any, request: Any, **kwargs: Any) -> Any:
        response = send(self, request, **kwargs)
        if request.url.path.startswith(_HUB_PATHS) and not kwargs.get("stream"):
            WATCH.check(f"answer to {request.method} {request.url.path}", _answer_text(response))
        return response

    return send_and_check


@pytest.fixture(autouse=True)
def _no_secret_shows() -> Iterator[None]:
    before = len(WATCH.found)
    yield
    shown = WATCH.found[before:]
    if shown:
        pytest.fail("secrets showed:\n" + "\n".join(sorted(set(shown))), pytrace=False)
