"""ServiceNow: the Table API on `incident` through ServiceNow's own client (`pysnc`), business-rule
webhooks in.

Vendor quirks, each from its source:
- `pysnc.asyncio.AsyncServiceNowClient` runs on httpx. Given an `httpx.AsyncClient` as `auth`, it sends
  every request through it unchanged: the hub builds that client, so TLS trusts the configured
  `ca_bundle` (an `ssl.SSLContext`, never `verify=False`, never the environment's REQUESTS_CA_BUNDLE),
  and there is no retry loop under it (httpx has none, pysnc's async client has none; its sync client's
  urllib3 `Retry` is what `auto_retry` would mount). `sync/retry.py` is the only retry layer.
- pysnc accepts only `https://` instances (`pysnc.utils.get_instance`).
- pysnc turns every 4xx/5xx into exceptions without status or headers (`AsyncAPI._validate_response`):
  a response hook on the hub's client raises the typed delivery error first, `Retry-After` included.
- pysnc's record calls ask for `sysparm_display_value=all` and `sysparm_exclude_reference_link=true`
  (`API._set_params`): each field is read as `{"value", "display_value"}`; it pages by
  `sysparm_offset`/`sysparm_limit` and the `X-Total-Count` header.
- There is no dedup key: the hub id travels in `correlation_id`, and `create` looks it up before it
  posts, so a create whose answer was lost is never repeated.
- Priority is computed from impact and urgency by the priority lookup rules and is read-only by default
  (docs/def-prio-lookup-rules.md): it is written only with the `write_priority` option.
- Resolving needs Resolution code (`close_code`) and Resolution notes (`close_notes`)
  (docs/resolve-and-close-an-incident.md); a data policy refuses a Resolved or Closed record without
  them, so a resolve fills whichever is empty from the options.
- `comments` (Additional comments, customer-visible) and `work_notes` (internal) are journal fields:
  writing one appends an entry (vendor/servicenow/NOTES.md). The Table API does not return the entry's
  sys_id.
- ServiceNow has no fixed outbound webhook (docs/c_BiDiIncidentTicketingIntegrations.md): the payload
  is the hub's own contract, sent by a business rule (docs/servicenow.md), authenticated by a shared
  secret header or HTTP basic auth.
- Rate limits are rules an instance's administrator sets (requests an hour per user or role); a 429 carries
  `Retry-After` (seconds) and `X-RateLimit-Reset` (UNIX time the window resets) (API reference, "Inbound
  REST API rate limiting"). No default is published: the connector keeps the hub's default pace.
"""

from __future__ import annotations

import asyncio
import base64
import hmac
import json
import ssl
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from datetime import UTC, datetime
from typing import Any, Literal, TypeVar

import httpx
from pydantic import BaseModel, ConfigDict, Field
from pysnc import exceptions as snc_errors
from pysnc.asyncio import AsyncServiceNowClient

from incident_hub.connectors.base import (
    MALFORMED,
    ChangeKind,
    CheckResult,
    Connector,
    ConnectorConfig,
    ConnectorError,
    ExternalChange,
    ExternalNote,
    Health,
    OutboundNote,
    PushResult,
    WebhookParseError,
    WebhookRejected,
)
from incident_hub.mapping.document import MappingDocument, default_for
from incident_hub.model import ExternalRef, Incident
from incident_hub.sync.retry import (
    DeliveryError,
    HeaderGetter,
    PermanentDeliveryError,
    classify_transport_error,
    parse_retry_after,
    parse_seconds,
    raise_for_response,
    seconds_until,
    write_outcome,
)

TABLE = "incident"
TIME_FORMAT = "%Y-%m-%d %H:%M:%S"  # sys_updated_on and friends, in UTC
CORRELATION_DISPLAY = "incident-hub"
SHORT_DESCRIPTION_MAX = 160
RESOLVING = frozenset({"6", "7"})  # Resolved, Closed: the data policy wants close_code and close_notes
ON_HOLD = "3"
CANCELED = "8"
JOURNALS = {"comments": True, "work_notes": False}  # element -> is_public
# Canonical field -> (vendor reference field, option naming its sys_ids).
REFERENCES = {
    "assigned_team": ("assignment_group", "assignment_groups"),
    "assignee": ("assigned_to", "assignees"),
}
_RECORD_FIELDS = (
    "sys_id",
    "number",
    "sys_created_on",
    "sys_updated_on",
    "sys_updated_by",
    "correlation_id",
)
# What a malformed body raises while it is read; pydantic's ValidationError is a ValueError.
_PYSNC_ERRORS = (
    snc_errors.AuthenticationException,
    snc_errors.RoleException,
    snc_errors.NotFoundException,
    snc_errors.RequestException,
    snc_errors.RestException,
    snc_errors.InstanceException,
)

T = TypeVar("T")


class ServiceNowOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")

    username: str = Field(
        description="user_name of the integration user the hub signs in as (basic auth, with the "
        "password in `credentials`); its changes come back with this sys_updated_by and are echoes."
    )
    caller_id: str | None = Field(
        default=None, description="sys_id of the caller on incidents the hub opens."
    )
    category: str | None = Field(
        default=None, description="Category of incidents the hub opens, e.g. software."
    )
    assignment_groups: dict[str, str] = Field(
        default_factory=dict, description="Canonical team -> sys_user_group sys_id (both ways)."
    )
    assignees: dict[str, str] = Field(
        default_factory=dict, description="Canonical assignee -> sys_user sys_id (both ways)."
    )
    close_code: str = Field(
        default="Solution provided",
        description="Resolution code written when the hub resolves or closes and the record has none.",
    )
    close_notes: str = Field(
        default="Resolved in incident-hub.",
        description="Resolution notes written when the hub resolves or closes and neither the incident's "
        "resolution notes nor the record say anything.",
    )
    hold_reason: str | None = Field(
        default=None, description="hold_reason value written with state 3 (On Hold), if a mapping writes it."
    )
    write_priority: bool = Field(
        default=False, description="Also write priority (only for instances without the priority lookup)."
    )
    page_size: int = Field(default=100, ge=1, le=10_000, description="Records per list page.")
    webhook_auth: Literal["header", "basic"] = Field(
        default="header", description="How the business rule authenticates: shared-secret header or basic."
    )
    webhook_header: str = Field(default="X-Incident-Hub-Secret", description="The shared-secret header.")
    webhook_username: str | None = Field(
        default=None, description="Basic auth user name the business rule sends (webhook_auth: basic)."
    )


class ServiceNowConnector(Connector):
    kind = "servicenow"
    Options = ServiceNowOptions
    options: ServiceNowOptions

    def __init__(self, config: ConnectorConfig) -> None:
        super().__init__(config)
        self._mapping = _with_references(default_for(self.kind), self.options)
        self._client: AsyncServiceNowClient | None = None
        self._client_loop: asyncio.AbstractEventLoop | None = None
        self._base = config.base_url.rstrip("/")

    def default_mapping(self) -> MappingDocument:
        return self._mapping

    # ---- client ---------------------------------------------------------------------------------------

    def client(self) -> AsyncServiceNowClient:
        """The pysnc client of the running event loop (httpx connections belong to one loop)."""
        loop = asyncio.get_running_loop()
        if self._client is None or self._client_loop is not loop:
            try:
                password = self.config.credentials.read() if self.config.credentials else None
            except ConnectorError as error:
                raise PermanentDeliveryError(f"connector {self.id}: {error}") from error
            if password is None:
                raise PermanentDeliveryError(f"connector {self.id}: no credentials configured")
            trust = ssl.create_default_context()
            if self.config.ca_bundle is not None:
                trust.load_verify_locations(cafile=str(self.config.ca_bundle))
            session = httpx.AsyncClient(
                auth=(self.options.username, password.get_secret_value()),
                base_url=self._base,
                verify=trust,
                timeout=self.config.timeout_seconds,
                trust_env=False,
                follow_redirects=False,
                event_hooks={"request": [_accept_json], "response": [_raise_for_status]},
            )
            try:
                self._client = AsyncServiceNowClient(self._base, session, auto_retry=False)
            except snc_errors.InstanceException as error:
                raise PermanentDeliveryError(f"ServiceNow base URL {self._base!r}: {error}") from error
            self._client_loop = loop
        return self._client

    async def _call(self, step: Callable[[], Awaitable[T]]) -> T:
        """One or more pysnc calls, their failures typed for the retry policy."""
        try:
            return await step()
        except DeliveryError:
            raise
        except httpx.HTTPError as error:
            raise classify_transport_error(error) from error
        except _PYSNC_ERRORS as error:
            raise PermanentDeliveryError(f"ServiceNow: {type(error).__name__}: {error}") from error
        except (KeyError, ValueError) as error:  # a 2xx answer that is not the Table API's
            raise PermanentDeliveryError(f"ServiceNow answered {type(error).__name__}: {error}") from error

    async def _record(self, batch_size: int = 1) -> Any:
        record = await self.client().GlideRecord(TABLE, batch_size=batch_size)
        record.fields = self._read_fields()
        return record

    async def close(self) -> None:
        if self._client is not None:
            try:
                if self._client_loop is asyncio.get_running_loop():
                    await self._client.close()
            finally:
                self._client = None
        await super().close()

    # ---- inbound --------------------------------------------------------------------------------------

    def verify_webhook(self, headers: Mapping[str, str], body: bytes) -> None:
        if self.config.webhook_secret is None:
            raise WebhookRejected(
                "no webhook secret configured for this connector; ServiceNow webhooks are authenticated"
            )
        try:
            secret = self.config.webhook_secret.read().get_secret_value()
        except ConnectorError as error:
            raise WebhookRejected(f"cannot check the webhook's credentials: {error}", status=503) from None
        if self.options.webhook_auth == "header":
            presented = headers.get(self.options.webhook_header.lower())
            if not presented:
                raise WebhookRejected(f"missing {self.options.webhook_header}")
            if not _same(presented, secret):
                raise WebhookRejected(f"{self.options.webhook_header} does not match the shared secret")
            return
        user, password = _basic(headers.get("authorization"))
        expected_user = self.options.webhook_username or ""
        # Both compared, always: the time taken says nothing about which one was wrong.
        if not (_same(user, expected_user) & _same(password, secret)) or not expected_user:
            raise WebhookRejected("HTTP basic credentials missing or wrong")

    def webhook_event_id(self, headers: Mapping[str, str], body: bytes) -> str | None:
        """sys_id and sys_mod_count: one per record version, the same when the REST message is resent."""
        try:
            payload = json.loads(body)
            return f"{payload['sys_id']}:{payload['sys_mod_count']}"
        except (*MALFORMED, UnicodeDecodeError):
            return None

    def parse_webhook(self, headers: Mapping[str, str], body: bytes) -> list[ExternalChange]:
        try:
            payload = json.loads(body)
            if not isinstance(payload, dict):
                raise TypeError("the body is not a JSON object")
            if payload.get("table", TABLE) != TABLE:
                return []
            return self._changes(payload)
        except (*MALFORMED, UnicodeDecodeError) as error:
            raise WebhookParseError(
                f"not a ServiceNow incident webhook: {type(error).__name__}: {error}"
            ) from None

    def _changes(self, payload: dict[str, Any]) -> list[ExternalChange]:
        sys_id = _sys_id(payload["sys_id"])
        operation = payload["operation"]
        if operation not in ("insert", "update"):
            raise ValueError(f"operation {operation!r} is neither insert nor update")
        fields = payload["fields"]
        if not isinstance(fields, dict):
            raise TypeError("fields is not an object")
        actor = _text(payload["sys_updated_by"])
        common: dict[str, Any] = {
            "connector_id": self.id,
            "external_id": sys_id,
            "external_key": _text(payload.get("number")),
            "url": self._url(sys_id),
            "vendor_timestamp": _time(payload["sys_updated_on"]),
            "vendor_time_resolution": 1.0,  # sys_updated_on is whole seconds
            "event_id": f"{sys_id}:{payload['sys_mod_count']}",
            "raw": payload,
        }
        values = self._fields_of(fields)
        if operation == "update":
            changed = payload.get("changed")
            if changed is not None:
                if not isinstance(changed, list) or not all(isinstance(c, str) for c in changed):
                    raise TypeError("changed is not a list of field names")
                if any(c in self._severity_fields() for c in changed):
                    changed = [*changed, *self._severity_fields()]
                values = {k: v for k, v in values.items() if k in changed}
        changes: list[ExternalChange] = []
        if operation == "insert" or values:
            changes.append(
                ExternalChange(
                    **common,
                    kind=ChangeKind.CREATED if operation == "insert" else ChangeKind.UPDATED,
                    fields=values,
                    actor=actor,
                    actor_is_self=self._is_hub(actor),
                    hub_incident_id=_hub_id(payload.get("correlation_id")),
                )
            )
        journal = payload.get("journal") or []
        if not isinstance(journal, list):
            raise TypeError("journal is not a list")
        for entry in journal:
            element = entry["element"]
            if element not in JOURNALS:
                continue
            author = _text(entry.get("sys_created_by")) or actor
            changes.append(
                ExternalChange(
                    **common,
                    kind=ChangeKind.NOTE,
                    note=ExternalNote(
                        external_comment_id=_sys_id(entry["sys_id"]),
                        body=str(entry["value"]),
                        author=author,
                        is_public=JOURNALS[element],
                    ),
                    actor=author,
                    actor_is_self=self._is_hub(author),
                )
            )
        return changes

    def _is_hub(self, user_name: str | None) -> bool:
        return user_name is not None and user_name.lower() == self.options.username.lower()

    def _severity_fields(self) -> list[str]:
        return [rule.field for rule in self.mapping().severity.from_vendor] + [
            f for written in self.mapping().severity.to_vendor.values() for f in written
        ]

    def _watched_fields(self) -> set[str]:
        mapping = self.mapping()
        return {mapping.status.field, *self._severity_fields(), *mapping.fields.values()}

    def _read_fields(self) -> list[str]:
        return sorted(
            {*self._watched_fields(), *_RECORD_FIELDS, "close_code", "close_notes", "sys_mod_count"}
        )

    def _fields_of(self, record: Mapping[str, Any]) -> dict[str, Any]:
        """Watched fields in the mapping's terms: choices as their value strings, references by the
        canonical name they stand for (else their display value), empty text as none."""
        names = {vendor: option for vendor, option in REFERENCES.values()}
        values: dict[str, Any] = {}
        for name in self._watched_fields():
            if name not in record:
                continue
            value, display = _value(record[name])
            if name in names:
                by_id = {v: k for k, v in self._references(names[name]).items()}
                value = by_id.get(value or "", display or value) if value else None
            if name == "short_description" and not value:
                continue  # the hub's title cannot be emptied
            values[name] = value or None
        return values

    def _references(self, option: str) -> dict[str, str]:
        """Canonical name -> sys_id for a reference option; teams also from the mapping's `teams`."""
        configured: dict[str, str] = getattr(self.options, option)
        return self.team_targets(configured) if option == "assignment_groups" else configured

    def _url(self, sys_id: str) -> str:
        return f"{self._base}/{TABLE}.do?sys_id={sys_id}"

    def _snapshot(self, record: dict[str, Any]) -> ExternalChange:
        sys_id = _value(record["sys_id"])[0] or ""
        return ExternalChange(
            connector_id=self.id,
            external_id=sys_id,
            external_key=_value(record.get("number"))[0],
            url=self._url(sys_id),
            kind=ChangeKind.SNAPSHOT,
            fields=self._fields_of(record),
            vendor_timestamp=_time(_value(record["sys_updated_on"])[0]),
            vendor_time_resolution=1.0,  # sys_updated_on is whole seconds
            actor=_value(record.get("sys_updated_by"))[0],
            hub_incident_id=_hub_id(_value(record.get("correlation_id"))[0]),
            raw=record,
        )

    def _result(self, record: dict[str, Any]) -> PushResult:
        sys_id = _value(record["sys_id"])[0] or ""
        stamp = _value(record.get("sys_updated_on"))[0]
        created = _value(record.get("sys_created_on"))[0]
        return PushResult(
            external_id=sys_id,
            external_key=_value(record.get("number"))[0],
            url=self._url(sys_id),
            vendor_timestamp=_time(stamp) if stamp else None,
            created_at=_time(created) if created else None,
            # The instance computes priority from impact and urgency: remember what it made.
            fields={"priority": priority} if (priority := _value(record.get("priority"))[0]) else {},
        )

    # ---- outbound -------------------------------------------------------------------------------------

    def _edits(self, fields: dict[str, Any], current: dict[str, Any] | None) -> dict[str, str]:
        """Table API values for the given vendor fields that differ from `current` (None: a new record)."""
        references = {vendor: option for vendor, option in REFERENCES.values()}
        edits: dict[str, str] = {}
        for name, value in fields.items():
            if name == "priority" and not self.options.write_priority:
                continue  # computed by ServiceNow from impact and urgency
            if name in references and value is not None:
                value = self._references(references[name]).get(str(value))
                if value is None:
                    continue  # a name with no sys_id configured: nothing to write
            if name == "short_description" and value is not None:
                value = " ".join(str(value).splitlines())[:SHORT_DESCRIPTION_MAX]
            text = "" if value is None else str(value)
            if current is None and not text:
                continue
            if current is not None and _value(current.get(name))[0] == text:
                continue
            edits[name] = text
        state = edits.get("state")
        if state in RESOLVING:
            for name in ("close_code", "close_notes"):
                held = _value((current or {}).get(name))[0]
                if not edits.get(name) and not held:
                    edits[name] = getattr(self.options, name)
                elif name in edits and not edits[name]:
                    del edits[name]  # a resolve never clears them
        if state == ON_HOLD and self.options.hold_reason:
            edits["hold_reason"] = self.options.hold_reason
        return edits

    async def _find(self, hub_id: str) -> dict[str, Any] | None:
        record = await self._record()
        record.add_query("correlation_id", hub_id)
        await record.query()
        if not await record.next():
            return None
        found: dict[str, Any] = record.serialize(display_value="all")
        return found

    async def find(self, incident: Incident) -> PushResult | None:
        found = await self._call(lambda: self._find(str(incident.id)))
        return self._result(found) if found else None

    async def find_all(self, incident: Incident) -> list[PushResult]:
        """Every incident whose correlation_id is the hub's id (a slow instance may hold two)."""

        async def find_all() -> list[dict[str, Any]]:
            record = await self._record(batch_size=20)
            record.add_query("correlation_id", str(incident.id))
            await record.query()
            found: list[dict[str, Any]] = []
            while await record.next():
                found.append(record.serialize(display_value="all"))
            return found

        return [self._result(found) for found in await self._call(find_all)]

    async def cancel_duplicate(self, duplicate: ExternalRef, kept: ExternalRef) -> None:
        """State Canceled (8) with a work note naming the kept incident: not Resolved, which would count
        as work done in the instance's reports."""
        name = kept.external_key or kept.external_id

        async def cancel() -> None:
            record = await self._record()
            record.fields = ["sys_id", "state", "work_notes"]
            if not await record.get(duplicate.external_id):
                raise PermanentDeliveryError(
                    f"ServiceNow incident {duplicate.external_id} not found", status_code=404
                )
            _set(record, "work_notes", f"Duplicate of {name}, which incident-hub keeps in step. Canceled.")
            _set(record, "state", CANCELED)
            await record.update()

        await self._call(cancel)

    async def create(self, incident: Incident, fields: dict[str, Any]) -> PushResult:
        async def create() -> dict[str, Any]:
            # No dedup key in ServiceNow: a create whose answer was lost may have made the record.
            found = await self._find(str(incident.id))
            if found is not None:
                return await self._update(_value(found["sys_id"])[0] or "", fields)
            record = await self._record()
            record.initialize()
            values = {
                **self._edits({"short_description": incident.title, **fields}, None),
                "correlation_id": str(incident.id),
                "correlation_display": CORRELATION_DISPLAY,
            }
            if self.options.caller_id:
                values["caller_id"] = self.options.caller_id
            if self.options.category:
                values["category"] = self.options.category
            for name, value in values.items():
                record.set_value(name, value)
            # A slow instance may commit the record after the client gave up: the push then looks for it.
            with write_outcome():
                await record.insert()
            created: dict[str, Any] = record.serialize(display_value="all")
            return created

        return self._result(await self._call(create))

    async def _update(self, sys_id: str, fields: dict[str, Any]) -> dict[str, Any]:
        record = await self._record()
        record.fields = sorted({*self._read_fields(), *fields, "hold_reason"})
        if not await record.get(sys_id):
            raise PermanentDeliveryError(f"ServiceNow incident {sys_id} not found", status_code=404)
        edits = self._edits(fields, record.serialize(display_value="all"))
        if edits:
            for name, value in edits.items():
                _set(record, name, value)
            await record.update()
        found: dict[str, Any] = record.serialize(display_value="all")
        return found

    async def update(self, ref: ExternalRef, fields: dict[str, Any]) -> PushResult:
        return self._result(await self._call(lambda: self._update(ref.external_id, fields)))

    async def add_note(self, ref: ExternalRef, note: OutboundNote) -> str:
        """Appends a Additional comment (public) or Work note (internal); the body already names its
        origin (`[jira] alice: ...`). Returns `<sys_id>:<sys_mod_count>` of the record version it made:
        the Table API does not give the journal entry's own sys_id."""

        async def add_note() -> str:
            record = await self.client().GlideRecord(TABLE, batch_size=1)
            journal = "comments" if note.is_public else "work_notes"
            record.fields = ["sys_id", "sys_mod_count", journal]
            if not await record.get(ref.external_id):
                raise PermanentDeliveryError(
                    f"ServiceNow incident {ref.external_id} not found", status_code=404
                )
            _set(record, journal, note.body)
            await record.update()
            return f"{ref.external_id}:{record.get_value('sys_mod_count')}"

        return await self._call(add_note)

    async def count_notes(self, ref: ExternalRef, note: OutboundNote) -> int | None:
        """The incident's journal entries (`sys_journal_field`, comments and work notes) whose text is
        the note's."""

        async def count_notes() -> int:
            entries = await self.client().GlideRecord("sys_journal_field", batch_size=100)
            entries.fields = ["element", "value"]
            entries.add_query("name", TABLE)
            entries.add_query("element_id", ref.external_id)
            await entries.query()
            held = 0
            while await entries.next():
                element, value = entries.get_value("element"), entries.get_value("value")
                held += element in JOURNALS and (value or "").strip() == note.body.strip()
            return held

        return await self._call(count_notes)

    async def fetch(self, ref: ExternalRef) -> ExternalChange:
        async def fetch() -> dict[str, Any]:
            record = await self._record()
            if not await record.get(ref.external_id):
                raise PermanentDeliveryError(
                    f"ServiceNow incident {ref.external_id} not found", status_code=404
                )
            found: dict[str, Any] = record.serialize(display_value="all")
            return found

        return self._snapshot(await self._call(fetch))

    async def list_changed(self, since: datetime) -> AsyncIterator[ExternalChange]:
        record = await self._call(lambda: self._record(self.options.page_size))
        # Whole seconds in UTC, rounded down: the first second is read again, never missed.
        record.add_encoded_query(f"sys_updated_on>={since.astimezone(UTC).strftime(TIME_FORMAT)}")
        # pysnc orders by sys_id (its own default, for stable pages): an update during the walk moves
        # no record across a page boundary, as ORDERBYsys_updated_on would.
        await self._call(record.query)
        while await self._call(record.next):
            yield self._snapshot(record.serialize(display_value="all"))

    async def list_open(self) -> AsyncIterator[ExternalChange]:
        """Incidents New, In Progress or On Hold, `page_size` records a page (`sysparm_limit`: 10,000 by
        default in the Table API docs, which warn that very large pages slow the instance).

        A Resolved incident stays `active` until it is Closed (incident state model), hence the state."""
        record = await self._call(lambda: self._record(self.options.page_size))
        record.add_encoded_query("active=true^state!=6")
        await self._call(record.query)
        while await self._call(record.next):
            yield self._snapshot(record.serialize(display_value="all"))

    async def health(self) -> Health:
        started = time.monotonic()

        async def me() -> bool:
            user = await self.client().GlideRecord("sys_user", batch_size=1)
            user.fields = ["sys_id", "user_name"]
            user.add_query("user_name", self.options.username)
            await user.query()
            return bool(await user.next())

        try:
            known = await self._call(me)
        except DeliveryError as error:
            return Health(ok=False, detail=str(error))
        elapsed = round((time.monotonic() - started) * 1000, 1)
        if not known:
            return Health(
                ok=False,
                detail=f"signed in, but no sys_user has user_name {self.options.username!r}: the hub's own "
                "changes would come back as news",
                latency_ms=elapsed,
            )
        return Health(
            ok=True,
            detail=f"ServiceNow Table API answers; signed in as {self.options.username}",
            latency_ms=elapsed,
        )

    async def check_target(self) -> list[CheckResult]:
        """The incident table can be read, and each configured assignment group exists."""

        async def readable() -> bool:
            record = await self._record()
            await record.query()
            return True

        try:
            await self._call(readable)
            results = [CheckResult(name="table", ok=True, detail=f"{TABLE} table readable")]
        except DeliveryError as error:
            results = [CheckResult(name="table", ok=False, detail=f"{TABLE}: {error}")]
        for team, sys_id in sorted(self.options.assignment_groups.items()):

            async def group(sys_id: str = sys_id) -> bool:
                found = await self.client().GlideRecord("sys_user_group", batch_size=1)
                found.fields = ["sys_id", "name"]
                found.add_query("sys_id", sys_id)
                await found.query()
                return bool(await found.next())

            name = f"assignment group of {team}"
            try:
                exists = await self._call(group)
            except DeliveryError as error:
                results.append(CheckResult(name=name, ok=False, detail=f"{sys_id}: {error}"))
                continue
            detail = f"{sys_id} exists" if exists else f"no sys_user_group {sys_id}"
            results.append(CheckResult(name=name, ok=exists, detail=detail))
        return results


# ---- values ---------------------------------------------------------------------------------------------


async def _accept_json(request: httpx.Request) -> None:
    # pysnc builds its requests without the client's default headers; the Table API wants Accept.
    request.headers.setdefault("Accept", "application/json")


async def _raise_for_status(response: httpx.Response) -> None:
    """Type a failed answer before pysnc sees it (pysnc drops the status and `Retry-After`)."""
    if response.is_success:
        return
    await response.aread()
    raise_for_response(response, rate_limit_wait)


def rate_limit_wait(header: HeaderGetter) -> float | None:
    """The wait a ServiceNow 429 asks for: `Retry-After`, else until `X-RateLimit-Reset` (UNIX time)."""
    wait = parse_retry_after(header("retry-after"))
    reset = parse_seconds(header("x-ratelimit-reset"))
    if wait is None and reset is not None:
        wait = seconds_until(datetime.fromtimestamp(reset, UTC))
    return wait


def _set(record: Any, name: str, value: str) -> None:
    """Set a field so pysnc sends it: a field the record was read without counts as unchanged when set,
    so it is first given the empty value a Table API read would have shown."""
    if record.get_element(name) is None:
        record.set_value(name, "")
    record.set_value(name, value)


def _with_references(base: MappingDocument, options: ServiceNowOptions) -> MappingDocument:
    fields = dict(base.fields)
    for canonical, (vendor, option) in REFERENCES.items():
        if getattr(options, option):
            fields[canonical] = vendor
    return base if fields == base.fields else base.model_copy(update={"fields": fields})


def _value(field: Any) -> tuple[str | None, str | None]:
    """A field as (value, display value): a plain string, or `{"value", "display_value", "link"}`."""
    if field is None:
        return None, None
    if isinstance(field, dict):
        value, display = field.get("value"), field.get("display_value")
        if value is not None and not isinstance(value, str):
            raise TypeError(f"field value is a {type(value).__name__}")
        return value, display if isinstance(display, str) else None
    if isinstance(field, str):
        return field, None
    raise TypeError(f"field is a {type(field).__name__}")


def _text(value: Any) -> str | None:
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise TypeError(f"expected a string, got {type(value).__name__}")
    return value


def _sys_id(value: Any) -> str:
    if not isinstance(value, str) or not value:
        raise ValueError("sys_id is not a non-empty string")
    return value


def _time(value: Any) -> datetime:
    """ServiceNow's `2026-11-24 14:05:00`, which the Table API and GlideDateTime.getValue() give in UTC."""
    if not isinstance(value, str):
        raise TypeError("a date-time is not a string")
    return datetime.strptime(value, TIME_FORMAT).replace(tzinfo=UTC)


def _hub_id(value: Any) -> str | None:
    if not isinstance(value, str) or not value:
        return None
    try:
        return str(uuid.UUID(value))
    except ValueError:
        return None  # another integration's correlation id


def _same(presented: str, expected: str) -> bool:
    # Bytes, not str: compare_digest refuses non-ASCII strings, and a header is attacker-controlled.
    return hmac.compare_digest(presented.encode(), expected.encode())


def _basic(header: str | None) -> tuple[str, str]:
    scheme, _, encoded = (header or "").partition(" ")
    if scheme.lower() != "basic":
        return "", ""
    try:
        user, _, password = base64.b64decode(encoded.strip(), validate=True).decode().partition(":")
    except (ValueError, UnicodeDecodeError):
        return "", ""
    return user, password
