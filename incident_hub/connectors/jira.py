"""Jira Cloud: platform REST API v3 through the `jira` client (jira-python), admin webhooks in.

Vendor quirks, each from its source:
- jira-python's `ResilientSession` retries 429/503 and connection errors by itself, sleeping up to 60 s
  (jira/resilientsession.py, `ResilientSession.__recoverable`): `max_retries=0` makes every call one
  attempt, so `sync/retry.py` is the only retry layer. The client is synchronous: calls run in a worker
  thread, never on the event loop.
- requests swaps `verify=True` for `REQUESTS_CA_BUNDLE`/`CURL_CA_BUNDLE` from the environment
  (requests/sessions.py, `merge_environment_settings`), never a path: the session's `verify` is the
  configured `ca_bundle` path (then the whole trust store of this connector), else the system store.
- REST v3 rich text (description, comment body) is Atlassian Document Format; webhook bodies use the REST
  v2 representation with plain strings (vendor/jira/NOTES.md, every file in webhook-examples/). Text is
  written as a minimal ADF document (paragraphs, hard breaks) that reads back as the same plain text.
- A summary holds no newline and at most 255 characters (the REST v3 `POST /issue` field errors).
- Status is not a field: it moves by workflow transitions, listed per issue
  (`GET /rest/api/3/issue/{id}/transitions`), each naming its target status `to.name`.
- `/rest/api/3/search` is gone (CHANGE-2046); `/rest/api/3/search/jql` pages by `nextPageToken` and is
  eventually consistent (its description in the v3 spec): a create whose answer was lost moments ago may
  not be found yet. jira-python calls it only when it knows the site is Cloud (`@cloud_api` on
  `JIRA.enhanced_search_issues` returns None otherwise), which `get_server_info=False` leaves unknown.
- JQL dates are wall-clock minutes in the searching account's profile time zone ("yyyy/MM/dd HH:mm", JQL
  field reference "Updated"): `since` is converted to the `timeZone` of `GET /rest/api/3/myself`.
- JQL sees entity properties only when an app declares them indexed (Connect `jiraEntityProperties`,
  Forge `jira:entityProperty`), which an API-token integration cannot: the hub id rides a label, set in
  the create call itself and carried by issue webhooks (`fields.labels`); the property (`property_key`)
  is an optional copy for apps and automation.
- Admin webhooks with a secret are signed `X-Hub-Signature: sha256=<hex HMAC-SHA256 of the raw body>`
  (Atlassian "Secure admin webhooks", WebSub `method=signature`; vendor/jira/webhook-signature/).
  `X-Atlassian-Webhook-Identifier` stays the same across retries (jira.js `WebhookHeaders`, from a
  captured delivery; Atlassian's page names it only second-hand, vendor/jira/NOTES.md). Deliveries travel
  in two lanes (primary, and secondary for cascades) and come in no guaranteed order.
- Webhooks of OAuth 2.0/Connect apps are not signed that way: a connector without a webhook secret takes
  each delivery as a hint and reads the issue or comment through the API: a forged one only makes it look.
- Changelog items name the field by `fieldId` (Cloud); `field` is the display name ("Story Points",
  "Status"). Server/DC bodies have no `fieldId`: system fields (`fieldtype` "jira") are read by `field`
  (webhook-issue-updated-assigned-on-server.json). Comment webhooks carry no `user`: the actor is the
  comment's `updateAuthor` (webhook-cloud-comment-*.json).
- A 429 carries `Retry-After` (seconds) and `X-RateLimit-Reset` (ISO 8601, `yyyy-MM-ddTHH:mmZ`: the
  request time plus that wait); either may be missing (developer.atlassian.com "Rate limiting"). Limits
  for API-token traffic are per-second bursts per endpoint, with no number published: the connector
  keeps the hub's default pace.
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import AsyncIterator, Callable, Mapping
from datetime import UTC, datetime
from typing import Any, TypeVar
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import requests
from jira import JIRA, JIRAError
from pydantic import BaseModel, ConfigDict, Field

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
from incident_hub.model import ExternalRef, Incident, Status
from incident_hub.signing import signature_matches
from incident_hub.sync.retry import (
    DeliveryError,
    HeaderGetter,
    PermanentDeliveryError,
    RetryableDeliveryError,
    parse_retry_after,
    raise_for_status,
    seconds_until,
    write_outcome,
)

SIGNATURE_HEADER = "x-hub-signature"
IDENTIFIER_HEADER = "x-atlassian-webhook-identifier"
HUB_LABEL_PREFIX = "incident-hub-"
SUMMARY_MAX = 255
_SYSTEM_FIELDS = frozenset({"status", "priority", "summary", "description"})
_ISSUE_EVENTS = {
    "jira:issue_created": ChangeKind.CREATED,
    "jira:issue_updated": ChangeKind.UPDATED,
    "jira:issue_deleted": ChangeKind.DELETED,
}
_COMMENT_EVENTS = frozenset({"comment_created", "comment_updated"})
_MISCONFIGURED = (
    requests.exceptions.InvalidURL,
    requests.exceptions.MissingSchema,
    requests.exceptions.InvalidSchema,
)
# What a malformed body raises while it is read; pydantic's ValidationError is a ValueError.

T = TypeVar("T")


class JiraOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")

    email: str = Field(
        description="E-mail of the Atlassian account the hub signs in as (with its API token)."
    )
    project_key: str = Field(description="Project new issues are opened in, e.g. OPS.")
    issue_type: str = Field(default="Incident", description="Issue type name of new issues.")
    property_key: str | None = Field(
        default=None,
        description="Also keep {incidentId, number} in this issue property (one more call per create).",
    )
    labels: list[str] = Field(
        default_factory=lambda: ["incident-hub"], description="Labels on every issue the hub opens."
    )
    hub_account_id: str | None = Field(
        default=None, description="accountId of that account (echo detection); else read from /myself."
    )
    required_fields: dict[str, Any] = Field(
        default_factory=dict,
        description="REST v3 field values every new issue carries, e.g. {customfield_10042: {value: Sev2}}.",
    )
    statuses: dict[Status, str] = Field(
        default_factory=dict, description="Canonical status -> Jira status name, over the default mapping."
    )
    page_size: int = Field(default=100, ge=1, le=100, description="Issues per search page.")
    initial_status: str | None = Field(
        default=None,
        description="Status of a new issue in the project's workflow; default: the status OPEN maps to. "
        "A create that wants this status makes no status call.",
    )


class JiraConnector(Connector):
    kind = "jira"
    Options = JiraOptions
    options: JiraOptions

    def __init__(self, config: ConnectorConfig) -> None:
        super().__init__(config)
        self._mapping = _with_statuses(default_for(self.kind), self.options.statuses)
        self._client: JIRA | None = None
        self._lock = threading.Lock()
        self._me: dict[str, Any] | None = None

    def default_mapping(self) -> MappingDocument:
        return self._mapping

    # ---- client ---------------------------------------------------------------------------------------

    def client(self) -> JIRA:
        with self._lock:
            if self._client is None:
                try:
                    token = self.config.credentials.read() if self.config.credentials else None
                except ConnectorError as error:
                    raise PermanentDeliveryError(f"connector {self.id}: {error}") from error
                if token is None:
                    raise PermanentDeliveryError(f"connector {self.id}: no credentials configured")
                # A path is never replaced by REQUESTS_CA_BUNDLE; True means the system store.
                verify = str(self.config.ca_bundle) if self.config.ca_bundle is not None else True
                self._client = JIRA(
                    server=self.config.base_url.rstrip("/"),
                    basic_auth=(self.options.email, token.get_secret_value()),
                    get_server_info=False,
                    options={"rest_api_version": "3", "verify": verify, "check_update": False},
                    timeout=self.config.timeout_seconds,
                    max_retries=0,
                )
                # Cloud-only calls (`enhanced_search_issues`) return None unless the client knows it
                # talks to Cloud, which get_server_info=False leaves unknown.
                self._client.deploymentType = "Cloud"
            return self._client

    def _call(self, call: Callable[..., T], *args: Any, **kw: Any) -> T:
        """One library call, its failure typed for the retry policy."""
        try:
            return call(*args, **kw)
        except JIRAError as error:
            response = error.response
            if response is not None:
                raise_for_status(
                    response.status_code, response.text, response.headers.get, "Jira", rate_limit_wait
                )
            raise PermanentDeliveryError(f"Jira: {error.text or error}") from error
        except _MISCONFIGURED as error:
            raise PermanentDeliveryError(f"Jira base URL {self.config.base_url!r}: {error}") from error
        except requests.RequestException as error:
            raise RetryableDeliveryError(f"Jira unreachable: {type(error).__name__}: {error}") from error

    async def close(self) -> None:
        if self._client is not None:
            await self.run_blocking(self._client.close)
        await super().close()

    def _myself(self, *, fresh: bool = False) -> dict[str, Any]:
        if self._me is None or fresh:
            self._me = self._call(self.client().myself)
        return self._me

    def _hub_account_id(self) -> str | None:
        if self.options.hub_account_id:
            return self.options.hub_account_id
        try:
            account = self._myself().get("accountId")
        except DeliveryError:
            return None
        return str(account) if account else None

    def _is_hub(self, user: Any) -> bool:
        account = user.get("accountId") if isinstance(user, dict) else None
        return account is not None and account == self._hub_account_id()

    def _browse(self, key: str | None) -> str | None:
        return f"{self.config.base_url.rstrip('/')}/browse/{key}" if key else None

    # ---- inbound --------------------------------------------------------------------------------------

    def verify_webhook(self, headers: Mapping[str, str], body: bytes) -> None:
        if self.config.webhook_secret is None:
            return  # unsigned deliveries are hints: parse_webhook reads the facts through the API
        presented = headers.get(SIGNATURE_HEADER)
        if not presented:
            raise WebhookRejected("missing X-Hub-Signature")
        method, _, digest = presented.strip().partition("=")
        if method.lower() != "sha256" or not digest.isascii():
            raise WebhookRejected("X-Hub-Signature is not sha256=<hex>")
        try:
            secret = self.config.webhook_secret.read().get_secret_value()
        except ConnectorError as error:
            raise WebhookRejected(f"cannot check X-Hub-Signature: {error}", status=503) from None
        if not signature_matches(secret, body, digest):
            raise WebhookRejected("X-Hub-Signature does not match the body")

    def webhook_event_id(self, headers: Mapping[str, str], body: bytes) -> str | None:
        """The change the signed body reports: its changelog id, or its comment's id and update time.
        Never `X-Atlassian-Webhook-Identifier`: the signature does not cover headers, so a captured
        body replayed with a new identifier would be applied again (and two different bodies sharing
        one identifier would be taken as one). Without either id, the body's hash is the key."""
        try:
            payload = json.loads(body)
            event = str(payload["webhookEvent"])
            changelog = (payload.get("changelog") or {}).get("id")
            if changelog:
                return f"{event}:changelog:{changelog}"
            comment = payload.get("comment") or {}
            if comment.get("id"):
                return f"{event}:comment:{comment['id']}:{comment.get('updated', '')}"[:200]
        except (*MALFORMED, UnicodeDecodeError):
            pass
        return None

    def parse_webhook(self, headers: Mapping[str, str], body: bytes) -> list[ExternalChange]:
        try:
            payload = json.loads(body)
            if not isinstance(payload, dict):
                raise TypeError("the body is not a JSON object")
        except MALFORMED as error:
            raise WebhookParseError(f"not a Jira webhook: {type(error).__name__}: {error}") from None
        event = payload.get("webhookEvent")
        if not isinstance(event, str):
            raise WebhookParseError("not a Jira webhook: no webhookEvent")
        if event not in _ISSUE_EVENTS and event not in _COMMENT_EVENTS:
            return []
        try:
            if self.config.webhook_secret is None:
                return self._read_back(event, payload, headers)
            return self._changes(event, payload, headers)
        except MALFORMED as error:
            raise WebhookParseError(f"Jira {event}: {type(error).__name__}: {error}") from None

    def _changes(
        self, event: str, payload: dict[str, Any], headers: Mapping[str, str]
    ) -> list[ExternalChange]:
        issue = payload["issue"]
        fields = issue.get("fields") or {}
        common: dict[str, Any] = {
            "connector_id": self.id,
            "external_id": str(issue["id"]),
            "external_key": issue.get("key"),
            "url": self._browse(issue.get("key")),
            "vendor_timestamp": datetime.fromtimestamp(payload["timestamp"] / 1000, UTC),
            "event_id": headers.get(IDENTIFIER_HEADER),
            "raw": payload,
        }
        if event in _COMMENT_EVENTS:
            return [self._note(payload["comment"], common)]
        changes: list[ExternalChange] = []
        if isinstance(payload.get("comment"), dict):  # Server/DC: jira:issue_updated, issue_commented
            changes.append(self._note(payload["comment"], common))
        kind = _ISSUE_EVENTS[event]
        values = self._fields_of(fields) if kind is ChangeKind.CREATED else {}
        if kind is ChangeKind.UPDATED:
            values = self._changelog(payload.get("changelog"))
            if not values:
                return changes
        user = payload.get("user")
        changes.append(
            ExternalChange(
                **common,
                kind=kind,
                fields=values,
                actor=user.get("displayName") if isinstance(user, dict) else None,
                actor_is_self=self._is_hub(user),
                hub_incident_id=_hub_id(fields.get("labels")),
            )
        )
        return changes

    def _note(self, comment: dict[str, Any], common: dict[str, Any]) -> ExternalChange:
        author = comment.get("updateAuthor") or comment.get("author") or {}
        name = author.get("displayName") if isinstance(author, dict) else None
        # The hub's timeline is append-only: an edited comment arrives as a note of its own.
        edited = comment.get("updated") not in (None, comment.get("created"))
        return ExternalChange(
            **common,
            kind=ChangeKind.NOTE,
            note=ExternalNote(
                external_comment_id=f"{comment['id']}@{comment['updated']}" if edited else str(comment["id"]),
                body=_text(comment["body"]) or "",
                author=name,
            ),
            actor=name,
            actor_is_self=self._is_hub(author),
        )

    def _changelog(self, changelog: Any) -> dict[str, Any]:
        """The watched fields a changelog changes, by field id, never by display name or value."""
        watched = self._watched_fields()
        values: dict[str, Any] = {}
        for item in (changelog or {}).get("items") or []:
            field_id = item.get("fieldId")
            if field_id is None and item.get("fieldtype") == "jira":
                field_id = str(item.get("field", "")).lower()
            if field_id in watched:
                values[field_id] = _text(item.get("toString"))
        return values

    def _read_back(
        self, event: str, payload: dict[str, Any], headers: Mapping[str, str]
    ) -> list[ExternalChange]:
        """An unsigned delivery names an issue (and comment); what happened is read through the API."""
        issue_id = str(payload["issue"]["id"])
        comment = payload["comment"] if event in _COMMENT_EVENTS else payload.get("comment")
        try:
            if isinstance(comment, dict):
                found = self._call(self.client().comment, issue_id, str(comment["id"])).raw
                common = {
                    "connector_id": self.id,
                    "external_id": issue_id,
                    "vendor_timestamp": _jira_time(found["updated"]),
                    "event_id": headers.get(IDENTIFIER_HEADER),
                    "raw": found,
                }
                return [self._note(found, common)]
            if event in _COMMENT_EVENTS:
                raise TypeError("comment is not an object")
            snapshot = self._snapshot(
                self._call(self.client().issue, issue_id, fields=self._read_fields()).raw
            )
        except DeliveryError as error:
            if error.status_code == 404 and event == "jira:issue_deleted":
                return [
                    ExternalChange(
                        connector_id=self.id,
                        external_id=issue_id,
                        kind=ChangeKind.DELETED,
                        vendor_timestamp=datetime.now(UTC),
                        event_id=headers.get(IDENTIFIER_HEADER),
                    )
                ]
            if error.status_code == 404:
                raise WebhookParseError(
                    f"Jira {event}: issue {issue_id} (or its comment) not found"
                ) from None
            raise WebhookRejected(
                f"Jira {event}: cannot read issue {issue_id}: {error}", status=503
            ) from None
        return [snapshot.model_copy(update={"event_id": headers.get(IDENTIFIER_HEADER)})]

    def _watched_fields(self) -> set[str]:
        mapping = self.mapping()
        severity = {rule.field for rule in mapping.severity.from_vendor}
        return {*_SYSTEM_FIELDS, mapping.status.field, *mapping.fields.values(), *severity}

    def _read_fields(self) -> str:
        return ",".join(sorted({*self._watched_fields(), "labels", "updated", "created"}))

    def _fields_of(self, fields: dict[str, Any]) -> dict[str, Any]:
        """Watched vendor fields as plain values: status and priority by name, rich text as text."""
        values: dict[str, Any] = {}
        for name in self._watched_fields():
            if name in fields:
                values[name] = _text(fields[name]) if name == "description" else _plain(fields[name])
        return values

    def _snapshot(self, issue: dict[str, Any]) -> ExternalChange:
        fields = issue["fields"]
        return ExternalChange(
            connector_id=self.id,
            external_id=str(issue["id"]),
            external_key=issue.get("key"),
            url=self._browse(issue.get("key")),
            kind=ChangeKind.SNAPSHOT,
            fields=self._fields_of(fields),
            vendor_timestamp=_jira_time(fields.get("updated") or fields["created"]),
            hub_incident_id=_hub_id(fields.get("labels")),
            raw=issue,
        )

    # ---- outbound -------------------------------------------------------------------------------------

    def _search(self, jql: str, token: str | None = None, **kw: Any) -> dict[str, Any]:
        page = self._call(
            self.client().enhanced_search_issues, jql, nextPageToken=token, json_result=True, **kw
        )
        if not isinstance(page, dict):
            raise PermanentDeliveryError(f"Jira search answered no page: {page!r}")
        return page

    def _edits(self, fields: dict[str, Any], current: dict[str, Any] | None = None) -> dict[str, Any]:
        """REST v3 values for the given vendor fields (status aside) that differ from `current`."""
        edits: dict[str, Any] = {}
        for name, value in fields.items():
            if name == "status" or (name == "priority" and not value):
                continue
            if name == "summary":
                value = _summary(str(value or ""))
            elif name == "description":
                value = _text(value)
            if current is not None and name in current and current[name] == value:
                continue
            if name == "description":
                edits[name] = _adf(value) if value else None
            elif name == "priority":
                edits[name] = {"name": str(value)}
            else:
                edits[name] = value
        return edits

    def _move_to(self, issue_id: str, key: str, target: str, now: tuple[str, str] | None = None) -> None:
        """Walk the workflow to `target`: one transition, or a reopen first when the issue is done.

        Without `now` (the issue's status), the transitions on offer are asked first: in the common case
        one of them reaches `target`, and the move costs two calls; the issue is read only when none does.
        """
        reads = self.mapping().status.from_vendor
        client = self.client()
        available: list[dict[str, Any]] | None = None
        if now is None:
            available = self._call(client.transitions, issue_id)
            step = _transition_to(available, target)
            if step is not None:
                self._call(client.transition_issue, issue_id, str(step["id"]))
                return
            now = _status_now(self._call(client.issue, issue_id, fields="status").raw["fields"])
        current, category = now
        if current == target or (reads.get(current) is not None and reads.get(current) == reads.get(target)):
            return  # already there, or a status the mapping reads the same (Cancelled and Done)
        if available is None:
            available = self._call(client.transitions, issue_id)
        step = _transition_to(available, target)
        if step is None and category == "done":
            reopen = next(
                (t for t in available if t["to"].get("statusCategory", {}).get("key") == "new"), None
            )
            if reopen is not None:
                self._call(client.transition_issue, issue_id, str(reopen["id"]))
                current = reopen["to"]["name"]
                available = self._call(client.transitions, issue_id)
                step = _transition_to(available, target)
        if step is None:
            offered = ", ".join(f"{t['name']} -> {t['to']['name']}" for t in available) or "none"
            raise PermanentDeliveryError(
                f"Jira issue {key} is in status {current!r}; no transition reaches {target!r}"
                f" (available: {offered})"
            )
        self._call(client.transition_issue, issue_id, str(step["id"]))

    def _edit(self, issue_id: str, edits: dict[str, Any]) -> None:
        """`PUT /issue/{id}` through the client's session (`Issue.update` would read the issue again)."""
        client = self.client()
        self._call(
            client._session.put, client._get_url(f"issue/{issue_id}"), data=json.dumps({"fields": edits})
        )

    def _set_property(self, issue_id: str, incident: Incident) -> None:
        if self.options.property_key:
            value = {"incidentId": str(incident.id), "number": incident.number}
            self._call(self.client().add_issue_property, issue_id, self.options.property_key, value)

    async def find(self, incident: Incident) -> PushResult | None:
        def find() -> PushResult | None:
            jql = (
                f"project = {_quoted(self.options.project_key)} AND labels = {_quoted(_hub_label(incident))}"
            )
            properties = self.options.property_key
            found = self._search(jql, maxResults=1, fields=["labels"], properties=properties)["issues"]
            if not found:
                return None
            issue = found[0]
            if properties and properties not in (issue.get("properties") or {}):
                self._set_property(str(issue["id"]), incident)  # the create's second call was lost
            return PushResult(
                external_id=str(issue["id"]),
                external_key=issue.get("key"),
                url=self._browse(issue.get("key")),
            )

        return await self.run_blocking(find)

    async def find_all(self, incident: Incident) -> list[PushResult]:
        """Every issue of the project labelled with the hub's id, oldest first."""

        def find_all() -> list[PushResult]:
            jql = (
                f"project = {_quoted(self.options.project_key)} AND labels = {_quoted(_hub_label(incident))}"
                " ORDER BY created ASC"
            )
            found = self._search(jql, maxResults=50, fields=["labels", "created"])["issues"]
            return [
                PushResult(
                    external_id=str(issue["id"]),
                    external_key=issue.get("key"),
                    url=self._browse(issue.get("key")),
                    created_at=_jira_time(created)
                    if (created := (issue.get("fields") or {}).get("created"))
                    else None,
                )
                for issue in found
            ]

        return await self.run_blocking(find_all)

    async def create(self, incident: Incident, fields: dict[str, Any]) -> PushResult:
        def create() -> PushResult:
            client = self.client()
            body = {
                **self.options.required_fields,
                **{name: value for name, value in self._edits(fields).items() if value is not None},
                "project": {"key": self.options.project_key},
                "issuetype": {"name": self.options.issue_type},
                "summary": _summary(str(fields.get("summary") or incident.title)),
                "labels": [*self.options.labels, _hub_label(incident)],
            }
            # A create whose answer is lost may still land: the push then looks before creating again.
            with write_outcome():
                created = self._call(client.create_issue, fields=body, prefetch=False)
            issue_id, key = str(created.id), str(created.key)
            self._set_property(issue_id, incident)
            initial = self.options.initial_status or self.mapping().status.to_vendor[Status.OPEN]
            if fields.get("status") and fields["status"] != initial:
                self._move_to(issue_id, key, str(fields["status"]))
            return PushResult(external_id=issue_id, external_key=key, url=self._browse(key))

        return await self.run_blocking(create)

    async def update(self, ref: ExternalRef, fields: dict[str, Any]) -> PushResult:
        # `fields` holds only what differs from what Jira held at the last sync: written at once, with no
        # read first (one call for an edit, two for a status move).
        def update() -> PushResult:
            key = ref.external_key or ref.external_id
            edits = self._edits(fields)
            if edits:
                self._edit(ref.external_id, edits)
            if fields.get("status"):
                self._move_to(ref.external_id, key, str(fields["status"]))
            return PushResult(external_id=ref.external_id, external_key=ref.external_key, url=ref.url)

        return await self.run_blocking(update)

    async def add_note(self, ref: ExternalRef, note: OutboundNote) -> str:
        def add_note() -> str:
            # jira-python types the body as str; REST v3 wants an ADF document.
            body: Any = _adf(note.body)
            return str(self._call(self.client().add_comment, ref.external_id, body).id)

        return await self.run_blocking(add_note)

    async def count_notes(self, ref: ExternalRef, note: OutboundNote) -> int | None:
        """The issue's comments (GET /issue/{id}/comment, every page) whose text is the note's."""
        text = _text(_adf(note.body))

        def count_notes() -> int:
            held, start = 0, 0
            while True:
                page = self._call(self.client().comments, ref.external_id, start_at=start, max_results=100)
                held += sum(1 for comment in page if _text(comment.raw.get("body")) == text)
                if len(page) < 100:
                    return held
                start += len(page)

        return await self.run_blocking(count_notes)

    async def fetch(self, ref: ExternalRef) -> ExternalChange:
        def fetch() -> ExternalChange:
            return self._snapshot(
                self._call(self.client().issue, ref.external_id, fields=self._read_fields()).raw
            )

        return await self.run_blocking(fetch)

    async def list_changed(self, since: datetime) -> AsyncIterator[ExternalChange]:
        me = await self.run_blocking(self._myself)
        try:
            zone = ZoneInfo(str(me.get("timeZone") or "UTC"))
        except (ZoneInfoNotFoundError, ValueError):
            zone = ZoneInfo("UTC")
        # Minutes in the account's zone, rounded down: the first minute is read again, never missed.
        local = since.astimezone(zone).strftime("%Y/%m/%d %H:%M")
        jql = f'project = {_quoted(self.options.project_key)} AND updated >= "{local}" ORDER BY updated ASC'
        async for change in self._snapshots(jql):
            yield change

    async def list_open(self) -> AsyncIterator[ExternalChange]:
        """Issues of the project not in the Done status category, oldest first, `page_size` a page (100
        at most once fields are asked for: `/rest/api/3/search/jql` maxResults)."""
        jql = f"project = {_quoted(self.options.project_key)} AND statusCategory != Done ORDER BY created ASC"
        async for change in self._snapshots(jql):
            yield change

    async def _snapshots(self, jql: str) -> AsyncIterator[ExternalChange]:
        """Every issue the JQL finds, as snapshots, `page_size` a page (enhanced search, page tokens)."""
        token: str | None = None
        while True:
            page = await self.run_blocking(
                self._search,
                jql,
                token,
                maxResults=self.options.page_size,
                fields=self._read_fields().split(","),
            )
            for issue in page.get("issues", []):
                yield self._snapshot(issue)
            token = page.get("nextPageToken")
            if page.get("isLast", True) or not token:
                return

    async def health(self) -> Health:
        started = time.monotonic()
        try:
            me = await self.run_blocking(self._myself, fresh=True)
        except DeliveryError as error:
            return Health(ok=False, detail=str(error))
        elapsed = round((time.monotonic() - started) * 1000, 1)
        account = me.get("accountId")
        if self.options.hub_account_id and account != self.options.hub_account_id:
            return Health(
                ok=False,
                detail=f"signed in as {account}, not hub_account_id {self.options.hub_account_id}: "
                "the hub's own changes would come back as news",
                latency_ms=elapsed,
            )
        return Health(
            ok=True,
            detail=f"Jira REST API v3 answers; signed in as {me.get('displayName')} ({account})",
            latency_ms=elapsed,
        )

    async def check_target(self) -> list[CheckResult]:
        """The project new issues open in exists, and has the configured issue type."""
        key = self.options.project_key
        try:
            project = await self.run_blocking(self._call, self.client().project, key)
        except DeliveryError as error:
            return [CheckResult(name="project", ok=False, detail=f"{key}: {error}")]
        results = [CheckResult(name="project", ok=True, detail=f"{key} ({project.name}) exists")]
        types = [t.name for t in getattr(project, "issueTypes", [])]
        if self.options.issue_type in types:
            results.append(
                CheckResult(name="issue type", ok=True, detail=f"{self.options.issue_type} exists")
            )
        else:
            results.append(
                CheckResult(
                    name="issue type",
                    ok=False,
                    detail=f"{key} has no issue type {self.options.issue_type!r}; it has: {', '.join(types)}",
                )
            )
        return results


# ---- values ---------------------------------------------------------------------------------------------


def _with_statuses(base: MappingDocument, names: dict[Status, str]) -> MappingDocument:
    """The default mapping with some canonical statuses written as other Jira status names; each written
    name reads back as the first canonical status that writes it (the round trip stays stable)."""
    if not names:
        return base
    to_vendor = {**base.status.to_vendor, **names}
    from_vendor = dict(base.status.from_vendor)
    for name in set(to_vendor.values()):
        reads = from_vendor.get(name)
        if reads is None or to_vendor[reads] != name:
            from_vendor[name] = next(s for s in Status if to_vendor[s] == name)
    status = {"field": base.status.field, "to_vendor": to_vendor, "from_vendor": from_vendor}
    return MappingDocument.model_validate({**base.model_dump(), "status": status})


def rate_limit_wait(header: HeaderGetter) -> float | None:
    """The wait a Jira 429 asks for: `Retry-After`, else until `X-RateLimit-Reset`."""
    wait = parse_retry_after(header("retry-after"))
    reset = header("x-ratelimit-reset")
    if wait is None and reset:
        try:
            wait = seconds_until(datetime.fromisoformat(reset.strip().replace("Z", "+00:00")))
        except ValueError:
            return None
    return wait


def _hub_label(incident: Incident) -> str:
    return f"{HUB_LABEL_PREFIX}{incident.id}"


def _hub_id(labels: Any) -> str | None:
    for label in labels if isinstance(labels, list) else []:
        if isinstance(label, str) and label.startswith(HUB_LABEL_PREFIX):
            try:
                return str(uuid.UUID(label.removeprefix(HUB_LABEL_PREFIX)))
            except ValueError:
                continue
    return None


def _quoted(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _summary(text: str) -> str:
    return " ".join(text.splitlines())[:SUMMARY_MAX]


def _status_now(fields: dict[str, Any]) -> tuple[str, str]:
    """An issue's status name and status category key (`new`, `indeterminate`, `done`)."""
    status = fields["status"]
    return str(status["name"]), str((status.get("statusCategory") or {}).get("key", ""))


def _transition_to(available: list[dict[str, Any]], target: str) -> dict[str, Any] | None:
    return next((t for t in available if t["to"]["name"] == target), None)


def _jira_time(value: str) -> datetime:
    """Jira's `2026-11-24T14:05:00.000+0000`."""
    return datetime.strptime(value, "%Y-%m-%dT%H:%M:%S.%f%z").astimezone(UTC)


def _plain(value: Any) -> Any:
    """A field value as the mapping reads it: a named object (status, priority, option) by its name."""
    if isinstance(value, dict):
        return value.get("name", value.get("value"))
    return value


def _text(value: Any) -> str | None:
    """Plain text from a webhook string or an ADF document; empty is none."""
    if isinstance(value, dict):
        value = _adf_text(value)
    elif value is not None and not isinstance(value, str):
        raise TypeError(f"rich text is a {type(value).__name__}")
    return value.replace("\r\n", "\n") if value else None


def _adf(text: str) -> dict[str, Any]:
    """Plain text as ADF: blank-line separated paragraphs, single newlines as hard breaks."""
    paragraphs: list[dict[str, Any]] = []
    for paragraph in text.replace("\r\n", "\n").split("\n\n"):
        content: list[dict[str, Any]] = []
        for number, line in enumerate(paragraph.split("\n")):
            if number:
                content.append({"type": "hardBreak"})
            if line:
                content.append({"type": "text", "text": line})
        paragraphs.append({"type": "paragraph", "content": content})
    return {"type": "doc", "version": 1, "content": paragraphs}


def _adf_text(node: dict[str, Any]) -> str:
    """ADF as the plain text REST v2 shows: blocks apart by a blank line, marks dropped."""
    kind = node.get("type")
    if kind == "text":
        return str(node.get("text", ""))
    if kind == "hardBreak":
        return "\n"
    if kind == "mention":
        return str((node.get("attrs") or {}).get("text", ""))
    children = [c for c in node.get("content") or [] if isinstance(c, dict)]
    inline = kind in ("paragraph", "heading")
    return ("" if inline else "\n\n").join(_adf_text(child) for child in children)
