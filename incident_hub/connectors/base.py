"""The connector contract: how a vendor plugs into the hub.

A connector translates between one vendor's API and vendor-neutral values: inbound, raw webhook bytes
become `ExternalChange`s (vendor field ids and values, the vendor's timestamp and actor); outbound, the
hub hands it the vendor field values to write (already mapped, see `incident_hub.mapping`). It never
touches the database and never retries: the sync engine records, and `sync/retry.py` retries.

Connectors are found through the entry-point group `incident_hub.connectors` (name = kind, value =
the `Connector` subclass), so a third party ships one without touching the hub.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import logging
import os
from abc import ABC, abstractmethod
from collections.abc import AsyncIterator, Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from enum import StrEnum
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any, ClassVar, ParamSpec, TypeVar

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    StrictBool,
    StrictFloat,
    StrictInt,
    field_validator,
    model_validator,
)

from incident_hub.mapping.document import MappingDocument, default_for
from incident_hub.model import ExternalRef, Incident, Severity, Status
from incident_hub.sync.retry import DeliveryError

log = logging.getLogger(__name__)

P = ParamSpec("P")
T = TypeVar("T")


class WebhookRejected(Exception):
    """An inbound webhook we refuse: `status` is the HTTP answer (401 unsigned/forged, 400 malformed)."""

    def __init__(self, reason: str, status: int = 401) -> None:
        super().__init__(reason)
        self.reason = reason
        self.status = status


# What a malformed body can make parsing raise (bad JSON, missing keys, wrong types, nesting past the
# recursion limit, out-of-range times): the one list every connector parses behind.
MALFORMED = (
    KeyError,
    IndexError,
    TypeError,
    AttributeError,
    ValueError,
    OverflowError,
    OSError,
    RecursionError,
)

REDACTED = b"[redacted]"


class WebhookParseError(WebhookRejected):
    """The body is not a webhook this connector understands (malformed JSON, missing fields)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason, status=400)


class ConnectorError(Exception):
    """A connector is misconfigured (missing credential, bad option)."""


class ChangeKind(StrEnum):
    CREATED = "created"
    UPDATED = "updated"
    NOTE = "note"
    DELETED = "deleted"
    SNAPSHOT = "snapshot"  # the whole current state, from fetch or list_changed


class ExternalNote(BaseModel):
    model_config = ConfigDict(frozen=True)

    external_comment_id: str
    body: str
    author: str | None = None
    is_public: bool = True


class ExternalChange(BaseModel):
    """What happened to one vendor object, in the vendor's own field ids and values."""

    model_config = ConfigDict(frozen=True)

    connector_id: str
    external_id: str
    external_key: str | None = None
    url: str | None = None
    kind: ChangeKind
    fields: dict[str, Any] = Field(default_factory=dict, description="Vendor field id -> new vendor value.")
    note: ExternalNote | None = None
    vendor_timestamp: datetime
    actor: str | None = None
    actor_is_self: bool = Field(default=False, description="Made by the connector's own account: an echo.")
    event_id: str | None = None
    hub_incident_id: str | None = Field(
        default=None, description="Our incident id, if the object carries it."
    )
    raw: dict[str, Any] = Field(default_factory=dict, description="The vendor payload, unknown fields kept.")
    vendor_time_resolution: float = Field(
        default=0.001,
        gt=0,
        description="Seconds the vendor timestamp is rounded to (PagerDuty and ServiceNow objects over REST: "
        "whole seconds). Ordering against earlier changes is judged at this resolution.",
    )
    reopen_window_seconds: float | None = Field(
        default=None,
        description="A new vendor object carrying the id of a hub incident resolved at most this long ago "
        "reopens that incident and takes over its link (Opsgenie: an alert firing again with a closed "
        "alert's alias). Older, it opens a new incident. None: a second object is not linked.",
    )


class PushResult(BaseModel):
    """Where the vendor object is after a write."""

    external_id: str
    external_key: str | None = None
    url: str | None = None
    vendor_timestamp: datetime | None = None
    created_at: datetime | None = Field(
        default=None, description="When the vendor made the object (from `find_all`: the oldest is kept)."
    )
    fields: dict[str, Any] = Field(
        default_factory=dict,
        description="Vendor values the write produced beyond those sent (e.g. a priority the vendor "
        "computed): remembered as what the vendor holds.",
    )


class OutboundNote(BaseModel):
    body: str
    author: str | None = None
    is_public: bool = True
    origin: str | None = Field(default=None, description="Where the note was first written, e.g. 'jira'.")


class Health(BaseModel):
    ok: bool
    detail: str
    latency_ms: float | None = None
    rate_limited_until: datetime | None = Field(
        default=None,
        description="The vendor answered 429: the connector's calls wait until then (this replica's view).",
    )


class CheckResult(BaseModel):
    """One thing `connectors check` proved or could not prove, in words an operator can act on."""

    name: str = Field(examples=["auth"], description="credentials, auth, service, project, webhook, ...")
    ok: bool | None = Field(description="None: not checked (the vendor cannot be asked).")
    detail: str


class Routing(BaseModel):
    """Which incidents go to this connector; empty lists mean all."""

    model_config = ConfigDict(extra="forbid")

    severities: list[Severity] = Field(default_factory=list)
    teams: list[str] = Field(default_factory=list)

    def admits(self, incident: Incident) -> bool:
        if self.severities and incident.severity not in self.severities:
            return False
        return not self.teams or incident.assigned_team in self.teams


class Secret(BaseModel):
    """A credential given by environment variable name or file path, never by value."""

    model_config = ConfigDict(extra="forbid")

    env: str | None = None
    file: Path | None = None

    def read(self) -> SecretStr:
        if self.env:
            value = os.environ.get(self.env)
            if value is None:
                raise ConnectorError(f"environment variable {self.env} is not set")
            return SecretStr(value)
        if self.file:
            try:
                return SecretStr(self.file.read_text().strip())
            except OSError as error:
                raise ConnectorError(f"cannot read secret file {self.file}: {error.strerror}") from None
        raise ConnectorError("a secret needs `env` or `file`")


def secret_references(config: ConnectorConfig, options: BaseModel | None = None) -> dict[str, Secret]:
    """Every credential the connector reads, by name (`credentials`, `webhook_secret`, `options.<field>`)."""
    found: dict[str, Secret] = {}
    if config.credentials is not None:
        found["credentials"] = config.credentials
    if config.webhook_secret is not None:
        found["webhook_secret"] = config.webhook_secret
    if options is not None:
        for name in type(options).model_fields:
            value = getattr(options, name)
            if isinstance(value, Secret):
                found[f"options.{name}"] = value
    return found


def secret_problems(config: ConnectorConfig, options: BaseModel | None = None) -> dict[str, str | None]:
    """Each credential's name -> why it cannot be read (None: readable). Values are never returned."""
    problems: dict[str, str | None] = {}
    for name, secret in secret_references(config, options).items():
        try:
            secret.read()
            problems[name] = None
        except ConnectorError as error:
            problems[name] = str(error)
    return problems


class ConnectorConfig(BaseModel):
    """One configured connector instance (from INCIDENT_HUB_CONFIG or the admin API)."""

    model_config = ConfigDict(extra="forbid")

    id: str = Field(pattern=r"^[a-z0-9][a-z0-9_-]{0,62}$", examples=["pagerduty"])
    kind: str = Field(examples=["pagerduty"], description="Entry-point name of the connector.")
    base_url: str = Field(examples=["https://api.pagerduty.com"])
    credentials: Secret | None = None
    webhook_secret: Secret | None = None
    ca_bundle: Path | None = Field(default=None, description="Extra CA certificates to trust (PEM).")
    # Numbers and flags are strict: pydantic would read `true` as 1 and "yes" or 1 as true.
    enabled: StrictBool = True
    routing: Routing = Field(default_factory=Routing)
    rate_limit_per_second: StrictFloat = Field(
        default=10.0,
        gt=0,
        description="Vendor calls a second at most (bursts of one second's worth). Left out: the vendor's "
        "documented limit where it publishes one (PagerDuty: 960 a minute, 16), else 10. A 429 pauses "
        "the connector's calls for the wait the vendor asks (docs/connectors.md: Rate limits).",
    )
    max_concurrency: StrictInt = Field(default=4, ge=1)
    timeout_seconds: StrictFloat = Field(default=10.0, gt=0)
    owns: list[str] = Field(
        default_factory=list,
        description="Canonical fields this system owns (e.g. [status]): other connectors' changes to them "
        "are ignored. Fields nobody owns follow the later vendor timestamp.",
        examples=[["status"]],
    )
    in_doubt_schedule_seconds: list[StrictFloat] = Field(
        default_factory=lambda: [5.0, 10.0, 20.0, 45.0, 100.0],
        min_length=1,
        description="After a create whose outcome is unknown (timeout, connection reset after sending, "
        "5xx), look for the object this many seconds apart (the first look this long after the failure); "
        "create again only when every look has found nothing. The window is their sum (3 minutes by "
        "default: a busy ServiceNow may answer a create after a minute or more).",
        examples=[[5, 10, 20, 40, 80]],
    )
    cancel_duplicates: StrictBool = Field(
        default=False,
        description="When two or more vendor objects carry one incident's id, the hub links the oldest and "
        "records the others as duplicates; true also cancels (closes) each duplicate with a note naming "
        "the kept one. False leaves that to a person.",
    )
    options: dict[str, Any] = Field(
        default_factory=dict, description="Vendor-specific, see the connector doc."
    )

    @model_validator(mode="before")
    @classmethod
    def _vendor_rate_limit(cls, data: Any) -> Any:
        if isinstance(data, dict) and "rate_limit_per_second" not in data:
            found = available_kinds().get(str(data.get("kind")))
            if found is not None and found.default_rate_limit_per_second is not None:
                data = {**data, "rate_limit_per_second": found.default_rate_limit_per_second}
        return data

    @field_validator("in_doubt_schedule_seconds")
    @classmethod
    def _positive_looks(cls, value: list[float]) -> list[float]:
        if any(seconds <= 0 for seconds in value):
            raise ValueError("every pause before a look must be more than 0 seconds")
        return value


class Connector(ABC):
    """One vendor. Subclasses set `kind` and `Options`, and implement the methods below."""

    kind: ClassVar[str]
    Options: ClassVar[type[BaseModel]]
    # The vendor's documented API rate limit (calls a second), the default of `rate_limit_per_second`;
    # None: the vendor publishes none.
    default_rate_limit_per_second: ClassVar[float | None] = None

    def __init__(self, config: ConnectorConfig) -> None:
        self.config = config
        self.id = config.id
        self.options = self.Options.model_validate(config.options)
        self._executor: ThreadPoolExecutor | None = None
        self._mapping_in_use: MappingDocument | None = None

    async def run_blocking(self, fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        """Run a blocking vendor-client call on this connector's own threads.

        Each connector gets `max_concurrency` threads of its own, so a slow vendor never takes the
        threads the database work and the other connectors run on (the default executor).
        """
        if self._executor is None:
            self._executor = ThreadPoolExecutor(
                max_workers=self.config.max_concurrency + 1, thread_name_prefix=f"connector-{self.id}"
            )
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, functools.partial(fn, *args, **kwargs))

    def shutdown_executor(self) -> None:
        if self._executor is not None:
            self._executor.shutdown(wait=False, cancel_futures=True)
            self._executor = None

    # ---- inbound --------------------------------------------------------------------------------------

    @abstractmethod
    def verify_webhook(self, headers: Mapping[str, str], body: bytes) -> None:
        """Raise `WebhookRejected` unless the call is authentic (headers are lower-cased)."""

    @abstractmethod
    def webhook_event_id(self, headers: Mapping[str, str], body: bytes) -> str | None:
        """The vendor's id for this delivery, stable across its retries, if it sends one."""

    def stored_body(self, body: bytes) -> bytes:
        """The verified body as the inbox keeps it: a vendor that echoes credentials into its payloads
        (Opsgenie repeats an integration's custom headers) strips them here."""
        return body

    @abstractmethod
    def parse_webhook(self, headers: Mapping[str, str], body: bytes) -> list[ExternalChange]:
        """Vendor-neutral facts from a verified webhook; raise `WebhookParseError` and nothing else."""

    # ---- the guarded readers every caller uses ------------------------------------------------------

    def read_webhook(self, headers: Mapping[str, str], body: bytes) -> list[ExternalChange]:
        """`parse_webhook` behind the guard all connectors share: whatever a malformed body makes parsing
        raise is a `WebhookParseError` (answered 400 and recorded), never an error of the hub."""
        try:
            return self.parse_webhook(headers, body)
        except WebhookRejected:
            raise
        except MALFORMED as error:
            raise WebhookParseError(f"not a {self.kind} webhook: {type(error).__name__}") from None

    def event_key(self, headers: Mapping[str, str], body: bytes) -> str | None:
        """`webhook_event_id`, None when the body does not say."""
        try:
            return self.webhook_event_id(headers, body)
        except MALFORMED:
            return None

    def kept_body(self, body: bytes) -> bytes:
        """The body as the hub may keep it, accepted or rejected: `stored_body`'s stripping, then the
        value of every secret this connector is configured with replaced, whatever the body is."""
        with contextlib.suppress(*MALFORMED):
            body = self.stored_body(body)
        for secret in secret_references(self.config, getattr(self, "options", None)).values():
            try:
                value = secret.read().get_secret_value().encode()
            except ConnectorError:
                continue
            if len(value) < 4:
                continue
            # As it stands, and as JSON writes it inside a string (quotes, backslashes, non-ASCII).
            for form in {value, json.dumps(value.decode(errors="replace"))[1:-1].encode()}:
                body = body.replace(form, REDACTED)
        return body

    # ---- outbound -------------------------------------------------------------------------------------

    @abstractmethod
    async def find(self, incident: Incident) -> PushResult | None:
        """The vendor object already made for this incident (check-before-create after a crash)."""

    async def find_all(self, incident: Incident) -> list[PushResult]:
        """Every vendor object carrying this incident's id, each with its `created_at` where the vendor
        says it (two or more: one is a duplicate). The default is `find()`'s one object, or none."""
        found = await self.find(incident)
        return [found] if found is not None else []

    async def cancel_duplicate(self, duplicate: ExternalRef, kept: ExternalRef) -> None:
        """Close a duplicate object with a note naming the kept one (option `cancel_duplicates`).

        The default adds the note, then writes the status the mapping gives CLOSED; a vendor with a
        proper "cancelled" state overrides it."""
        name = kept.external_key or kept.external_id
        await self.add_note(
            duplicate,
            OutboundNote(
                body=f"Duplicate of {name} ({kept.url or kept.external_id}), which incident-hub keeps in "
                "step. Closed by incident-hub; nothing more is written here.",
                author="incident-hub",
                is_public=False,
                origin="incident-hub",
            ),
        )
        status = self.mapping().status
        await self.update(duplicate, {status.field: status.to_vendor[Status.CLOSED]})

    @abstractmethod
    async def create(self, incident: Incident, fields: dict[str, Any]) -> PushResult:
        """Make the vendor object for `incident`, carrying the hub id so a retry can find it."""

    @abstractmethod
    async def update(self, ref: ExternalRef, fields: dict[str, Any]) -> PushResult:
        """Write changed vendor fields (only those given)."""

    @abstractmethod
    async def add_note(self, ref: ExternalRef, note: OutboundNote) -> str:
        """Add a comment/note; returns the vendor's id for it."""

    async def count_notes(self, ref: ExternalRef, note: OutboundNote) -> int | None:
        """How many notes on the object read as `note` (as `add_note` would write it): a retried note is
        added only when the vendor holds no more copies than the hub's earlier notes of that text
        explain. None: the vendor cannot be asked, and a retried note is added again."""
        return None

    @abstractmethod
    async def fetch(self, ref: ExternalRef) -> ExternalChange:
        """The object's current state, as a SNAPSHOT change."""

    @abstractmethod
    def list_changed(self, since: datetime) -> AsyncIterator[ExternalChange]:
        """Objects changed since `since` (paged), as SNAPSHOT changes."""

    def list_open(self) -> AsyncIterator[ExternalChange]:
        """Every object in the connector's scope that is not ended in the vendor (its status reads as
        neither RESOLVED nor CLOSED), as SNAPSHOT changes, in the vendor's largest pages.

        Optional: a full sweep compares these in pages and fetches one by one only the linked objects the
        listing left out. The default raises NotImplementedError, and the sweep fetches every link."""
        raise NotImplementedError(f"connector kind {self.kind} does not list its open objects")

    @abstractmethod
    async def health(self) -> Health:
        """Call the vendor with the configured credentials."""

    async def check(self) -> list[CheckResult]:
        """Everything an operator can verify about this configuration, one result per thing: every
        credential readable, the vendor accepting them (`health()`), then what `check_target()` and
        `check_webhook()` add. Never raises for a vendor or configuration failure: it reports it."""
        results = [
            CheckResult(name=name, ok=problem is None, detail=problem or "readable")
            for name, problem in secret_problems(self.config, self.options).items()
        ]
        if any(r.ok is False for r in results):
            results.append(CheckResult(name="auth", ok=False, detail="not tried: a credential is unreadable"))
            return results
        try:
            health = await self.health()
        except (ConnectorError, DeliveryError) as error:
            health = Health(ok=False, detail=str(error))
        results.append(CheckResult(name="auth", ok=health.ok, detail=health.detail))
        if health.ok:
            try:
                results += await self.check_target()
            except (ConnectorError, DeliveryError) as error:
                results.append(CheckResult(name="target", ok=False, detail=str(error)))
        results.append(await self.check_webhook())
        return results

    async def check_target(self) -> list[CheckResult]:
        """That the configured vendor objects (service, project, table, ...) exist and can be used."""
        return []

    async def check_webhook(self) -> CheckResult:
        """Whether the vendor's webhook to the hub is set up, where the vendor's API can be asked."""
        return CheckResult(
            name="webhook",
            ok=None,
            detail=f"not checked: the {self.kind} API cannot say where its webhooks go",
        )

    def default_mapping(self) -> MappingDocument:
        """The vendor's shipped default, with this connector's option-driven tweaks (a connector whose
        options change the mapping overrides this). Version 1 of the stored mapping starts from it."""
        return default_for(self.kind)

    def use_mapping(self, document: MappingDocument | None) -> None:
        """Translate with `document` from now on (the stored current version); None: the default."""
        self._mapping_in_use = document

    def mapping(self) -> MappingDocument:
        """The mapping this connector translates with: the stored one in use, else `default_mapping()`."""
        document: MappingDocument | None = getattr(self, "_mapping_in_use", None)
        return document if document is not None else self.default_mapping()

    def team_targets(self, configured: Mapping[str, str]) -> dict[str, str]:
        """Canonical team -> vendor target: the connector's option, with the mapping's `teams` over it."""
        teams = self.mapping().teams
        return {**configured, **(teams.targets() if teams is not None else {})}

    def team_of(self, configured: Mapping[str, str]) -> dict[str, str]:
        """Vendor target -> canonical team: `team_targets` reversed, the mapping's `from_vendor` first."""
        teams = self.mapping().teams
        reverse = {target: team for team, target in configured.items()}
        return {**reverse, **(teams.teams() if teams is not None else {})}

    async def close(self) -> None:
        """Release clients (subclasses that override this call it last)."""
        self.shutdown_executor()


ENTRY_POINT_GROUP = "incident_hub.connectors"


def available_kinds() -> dict[str, type[Connector]]:
    """Every connector class installed, by kind (entry-point name)."""
    kinds: dict[str, type[Connector]] = {}
    for entry in entry_points(group=ENTRY_POINT_GROUP):
        try:
            loaded = entry.load()
        except Exception:  # one broken plug-in must not take the others down
            log.exception("connector kind %r (%s) cannot be loaded", entry.name, entry.value)
            continue
        if isinstance(loaded, type) and issubclass(loaded, Connector):
            kinds[entry.name] = loaded
    return kinds


def build(config: ConnectorConfig) -> Connector:
    kinds = available_kinds()
    if config.kind not in kinds:
        raise ConnectorError(
            f"no connector of kind {config.kind!r}; installed: {', '.join(sorted(kinds)) or 'none'}"
        )
    return kinds[config.kind](config)
