"""PagerDuty: REST API v2 through PagerDuty's own client (`pagerduty.RestApiV2Client`), V3 webhooks in.

Vendor quirks, each from PagerDuty's docs:
- The client retries by itself (429 forever, 5xx, network errors). Those loops are turned off
  (`retry`, `max_http_attempts`, `max_network_attempts`) so `sync/retry.py` is the only retry layer.
- REST API rate limit: 960 requests a minute per user (or account) API key; a 429 says how long to wait in
  `ratelimit-reset` (seconds), not `Retry-After` (support.pagerduty.com "REST API Rate Limits"). The
  connector's default `rate_limit_per_second` is that limit, 16.
- The client is synchronous (httpx2): calls run in a worker thread, never on the event loop.
- The client accepts only `https://` base URLs; a private CA is given as `ca_bundle`.
- The REST API cannot move an incident back to `triggered` or reopen a resolved one
  (`PUT /incidents/{id}` takes `acknowledged` or `resolved`): such canonical moves are not written to
  PagerDuty; the next acknowledge/resolve is.
- V3 webhook signatures: `X-PagerDuty-Signature: v1=<hex HMAC-SHA256>`, several during secret rotation
  (webhooks "Verifying Signatures"); `event.id` identifies a delivery across retries.
- Webhook agents are user references without email: the hub's own user is recognised by id.
- Events API v2 mode (option `mode: events`, for routing-key setups): incidents are triggered,
  acknowledged and resolved by `dedup_key` through `pagerduty.EventsApiV2Client`; the dedup key is the
  link's external id. The Events API cannot set title, urgency or priority after the trigger, nor add
  notes: notes go through the REST API when a REST token (`credentials`) is also configured.
"""

from __future__ import annotations

import json
import logging
import ssl
import threading
from collections.abc import AsyncIterator, Iterator, Mapping
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any, Literal, TypeVar

import httpx2
import pagerduty
from pydantic import BaseModel, Field

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
    Secret,
    WebhookParseError,
    WebhookRejected,
)
from incident_hub.mapping.document import MappingDocument, default_for
from incident_hub.model import ExternalRef, Incident
from incident_hub.signing import signature_matches
from incident_hub.sync.retry import (
    DeliveryError,
    HeaderGetter,
    PermanentDeliveryError,
    RetryableDeliveryError,
    parse_retry_after,
    parse_seconds,
    raise_for_status,
    write_outcome,
)

log = logging.getLogger(__name__)

SIGNATURE_HEADER = "x-pagerduty-signature"
KEY_PREFIX = "incident-hub/"
_RETRY_STATUSES = (408, 425, 429, 500, 502, 503, 504)
# REST resources carry whole-second times; webhooks' `occurred_at` carries milliseconds.
REST_TIME_RESOLUTION = 1.0
_ASSIGNMENT_EVENTS = {
    "incident.escalated": "Escalated in PagerDuty",
    "incident.reassigned": "Reassigned in PagerDuty",
    "incident.delegated": "Reassigned to another escalation policy in PagerDuty",
}
# Events API v2 payload severity for the priority the mapping writes.
_EVENT_SEVERITY = {"P1": "critical", "P2": "error", "P3": "warning", "P4": "info", "P5": "info"}
_Client = TypeVar("_Client", pagerduty.RestApiV2Client, pagerduty.EventsApiV2Client)


class PagerDutyOptions(BaseModel):
    mode: Literal["rest", "events"] = Field(
        default="rest",
        description="`rest`: REST API v2 with a user token. `events`: Events API v2 with a routing key "
        "(trigger/acknowledge/resolve by dedup key); REST is used besides only for notes and reads.",
    )
    routing_key: Secret | None = Field(
        default=None, description="Events API v2 integration key (by `env` or `file`), for `mode: events`."
    )
    events_url: str = Field(default="https://events.pagerduty.com", description="Events API v2 host.")
    from_email: str = Field(description="Email of the PagerDuty user the hub acts as (the `From` header).")
    service_id: str = Field(description="Service new incidents are opened on.")
    hub_user_id: str | None = Field(
        default=None, description="That user's id; looked up from `from_email` when not given."
    )
    escalation_policies: dict[str, str] = Field(
        default_factory=dict, description="Canonical team -> escalation policy id (reassignment both ways)."
    )


class PagerDutyConnector(Connector):
    kind = "pagerduty"
    Options = PagerDutyOptions
    options: PagerDutyOptions
    default_rate_limit_per_second = 960 / 60

    def __init__(self, config: ConnectorConfig) -> None:
        super().__init__(config)
        if self.options.mode == "events" and self.options.routing_key is None:
            raise ConnectorError("PagerDuty `mode: events` needs the option `routing_key`")
        self._client: pagerduty.RestApiV2Client | None = None
        self._events: pagerduty.EventsApiV2Client | None = None
        self._lock = threading.Lock()
        self._priority_ids: dict[str, str] = {}
        self._user_ids: dict[str, str] = {}

    def default_mapping(self) -> MappingDocument:
        base = default_for(self.kind)
        if not self.options.escalation_policies:
            return base
        fields = {**base.fields, "assigned_team": "escalation_policy"}
        return base.model_copy(update={"fields": fields})

    # ---- client ---------------------------------------------------------------------------------------

    def client(self) -> pagerduty.RestApiV2Client:
        with self._lock:
            if self._client is None:
                token = self.config.credentials.read() if self.config.credentials else None
                if token is None:
                    raise PermanentDeliveryError(f"connector {self.id}: no credentials configured")
                client = pagerduty.RestApiV2Client(
                    token.get_secret_value(),
                    default_from=self.options.from_email,
                    base_url=self.config.base_url.rstrip("/"),
                    verify=self._verify(),
                )
                self._client = self._one_attempt(client)
            return self._client

    def events(self) -> pagerduty.EventsApiV2Client:
        with self._lock:
            if self._events is None:
                assert self.options.routing_key is not None
                client = pagerduty.EventsApiV2Client(
                    self.options.routing_key.read().get_secret_value(),
                    base_url=self.options.events_url.rstrip("/"),
                    verify=self._verify(),
                )
                self._events = self._one_attempt(client)
            return self._events

    def _verify(self) -> ssl.SSLContext | bool:
        if self.config.ca_bundle is None:
            return True
        context = ssl.create_default_context()
        context.load_verify_locations(cafile=str(self.config.ca_bundle))
        return context

    def _one_attempt(self, client: _Client) -> _Client:
        client.timeout = max(1, int(self.config.timeout_seconds))
        # One attempt per call: every retry status returns at once, network errors raise at once.
        client.retry = dict.fromkeys(_RETRY_STATUSES, 1)
        client.max_http_attempts = -1
        client.max_network_attempts = 0
        return client

    def _event(self, action: str, dedup_key: str, **properties: Any) -> None:
        with _delivery_errors("PagerDuty Events API"):
            self.events().send_event(action, dedup_key=dedup_key, **properties)

    def _call(self, method: str, path: str, **kw: Any) -> Any:
        with _delivery_errors("PagerDuty"):
            response = self.client().request(method, path, **kw)
        raise_for_status(
            response.status_code, response.text, response.headers.get, "PagerDuty", rate_limit_wait
        )
        return response.json() if response.content else None

    async def _acall(self, method: str, path: str, **kw: Any) -> Any:
        return await self.run_blocking(self._call, method, path, **kw)

    async def close(self) -> None:
        for client in (self._client, self._events):
            if client is not None:
                await self.run_blocking(client.close)
        await super().close()

    def _hub_user_id(self) -> str | None:
        if self.options.hub_user_id:
            return self.options.hub_user_id
        return self._user_id(self.options.from_email)

    def _user_id(self, email: str) -> str | None:
        if email not in self._user_ids:
            users = self._call("GET", "/users", params={"query": email}).get("users", [])
            match = next((u["id"] for u in users if u.get("email", "").lower() == email.lower()), None)
            if match is None:
                return None
            self._user_ids[email] = match
        return self._user_ids[email]

    def _priority_id(self, name: str) -> str | None:
        if not self._priority_ids:
            priorities = self._call("GET", "/priorities").get("priorities", [])
            self._priority_ids = {p["name"]: p["id"] for p in priorities}
        return self._priority_ids.get(name)

    # ---- inbound --------------------------------------------------------------------------------------

    def verify_webhook(self, headers: Mapping[str, str], body: bytes) -> None:
        if self.config.webhook_secret is None:
            raise WebhookRejected(
                "no webhook secret configured for this connector; PagerDuty webhooks are signed"
            )
        presented = headers.get(SIGNATURE_HEADER)
        if not presented:
            raise WebhookRejected("missing X-PagerDuty-Signature")
        secret = self.config.webhook_secret.read().get_secret_value()
        signatures = [
            p.strip().removeprefix("v1=") for p in presented.split(",") if p.strip().startswith("v1=")
        ]
        if not any(signature_matches(secret, body, s) for s in signatures):
            raise WebhookRejected("X-PagerDuty-Signature does not match the body")

    def webhook_event_id(self, headers: Mapping[str, str], body: bytes) -> str | None:
        # The event id inside the signed body; never the unsigned `X-Webhook-Id` header, which a replay
        # of a captured body could change (without an id, the body's hash is the key).
        try:
            return str(json.loads(body)["event"]["id"])
        except MALFORMED:
            return None

    def parse_webhook(self, headers: Mapping[str, str], body: bytes) -> list[ExternalChange]:
        try:
            event = json.loads(body)["event"]
            event_type = str(event["event_type"])
            occurred = _time(event["occurred_at"])
            data = event["data"]
            agent = event.get("agent") or {}
            if not isinstance(agent, dict):
                raise TypeError("event.agent is not an object")
        except MALFORMED as error:
            raise WebhookParseError(f"not a PagerDuty V3 webhook: {type(error).__name__}: {error}") from None
        if not isinstance(data, dict) or event.get("resource_type") != "incident":
            return []
        try:
            actor_id = agent.get("id") if isinstance(agent, dict) else None
            is_self = actor_id is not None and actor_id == self._hub_user_id()
        except (RetryableDeliveryError, PermanentDeliveryError):
            is_self = False
        common: dict[str, Any] = {
            "connector_id": self.id,
            "vendor_timestamp": occurred,
            "actor": agent.get("summary") if agent else None,
            "actor_is_self": is_self,
            "event_id": str(event.get("id")),
            "raw": event,
        }
        try:
            if data.get("type") == "incident_note":
                incident = data["incident"]
                return [
                    ExternalChange(
                        **common,
                        external_id=self._external_id(incident),
                        url=incident.get("html_url"),
                        kind=ChangeKind.NOTE,
                        note=ExternalNote(
                            external_comment_id=str(data["id"]),
                            body=str(data["content"]),
                            author=common["actor"],
                        ),
                    )
                ]
            if data.get("type") != "incident":
                return []
            kind = ChangeKind.CREATED if event_type == "incident.triggered" else ChangeKind.UPDATED
            change = self._incident_change(data, kind, common)
            said = _ASSIGNMENT_EVENTS.get(event_type)
            if said is None or is_self:
                return [change]
            # Who is paged now has no canonical field: it reaches the timeline as an internal note.
            assignees = ", ".join(
                str(a.get("summary")) for a in data.get("assignees") or [] if isinstance(a, dict)
            )
            note = ExternalNote(
                external_comment_id=f"event:{event.get('id')}",
                body=f"{said}" + (f"; paging {assignees}" if assignees else ""),
                author=common["actor"],
                is_public=False,
            )
            return [change, change.model_copy(update={"kind": ChangeKind.NOTE, "fields": {}, "note": note})]
        except MALFORMED as error:
            # ValueError includes pydantic's ValidationError: a field of the wrong type.
            raise WebhookParseError(f"PagerDuty {event_type}: {type(error).__name__}: {error}") from None

    def _incident_change(
        self, data: dict[str, Any], kind: ChangeKind, common: dict[str, Any]
    ) -> ExternalChange:
        fields: dict[str, Any] = {"status": data["status"], "title": data.get("title")}
        if data.get("urgency"):
            fields["urgency"] = data["urgency"]
        priority = data.get("priority")
        if isinstance(priority, dict) and priority.get("summary"):
            fields["priority"] = priority["summary"]
        policy = data.get("escalation_policy")
        if isinstance(policy, dict) and self.team_targets(self.options.escalation_policies):
            teams = self.team_of(self.options.escalation_policies)
            # A policy no team is mapped to leaves the team as it is.
            if policy.get("id") in teams:
                fields["escalation_policy"] = teams[policy["id"]]
        if "body" in data and isinstance(data["body"], dict) and data["body"].get("details"):
            fields["description"] = data["body"]["details"]
        key = data.get("incident_key") or ""
        return ExternalChange(
            **common,
            external_id=self._external_id(data),
            external_key=str(data.get("number") or data["id"]),
            url=data.get("html_url"),
            kind=kind,
            fields=fields,
            hub_incident_id=key.removeprefix(KEY_PREFIX) if key.startswith(KEY_PREFIX) else None,
        )

    def _external_id(self, incident: dict[str, Any]) -> str:
        """The incident's id in links: in events mode its dedup key (`incident_key`), which is what the
        Events API addresses it by; otherwise PagerDuty's incident id."""
        if self.options.mode == "events" and incident.get("incident_key"):
            return str(incident["incident_key"])
        return str(incident["id"])

    # ---- outbound -------------------------------------------------------------------------------------

    def _body(self, fields: dict[str, Any], *, creating: bool) -> dict[str, Any]:
        body: dict[str, Any] = {"type": "incident" if creating else "incident_reference"}
        if fields.get("title"):
            body["title"] = fields["title"]
        if "urgency" in fields:
            body["urgency"] = fields["urgency"]
        if "priority" in fields:
            priority_id = self._priority_id(str(fields["priority"]))
            body["priority"] = {"id": priority_id, "type": "priority_reference"} if priority_id else None
        if fields.get("escalation_policy"):
            policy = self.team_targets(self.options.escalation_policies).get(str(fields["escalation_policy"]))
            if policy:
                body["escalation_policy"] = {"id": policy, "type": "escalation_policy_reference"}
        # PagerDuty's API moves incidents only forward: to acknowledged or resolved.
        if not creating and fields.get("status") in ("acknowledged", "resolved"):
            body["status"] = fields["status"]
        return body

    async def find(self, incident: Incident) -> PushResult | None:
        if self.options.mode == "events":
            return None  # a trigger with the incident's dedup key never opens a second incident
        found = await self._acall(
            "GET", "/incidents", params={"incident_key": KEY_PREFIX + str(incident.id), "date_range": "all"}
        )
        incidents = found.get("incidents", []) if found else []
        return _result(incidents[0]) if incidents else None

    async def find_all(self, incident: Incident) -> list[PushResult]:
        """Every incident with the hub's `incident_key`, open or not (a key dedups only open ones)."""
        if self.options.mode == "events":
            return []
        found = await self._acall(
            "GET",
            "/incidents",
            params={
                "incident_key": KEY_PREFIX + str(incident.id),
                "date_range": "all",
                "sort_by": "created_at:asc",
            },
        )
        return [_result(data) for data in (found.get("incidents", []) if found else [])]

    async def create(self, incident: Incident, fields: dict[str, Any]) -> PushResult:
        if self.options.mode == "events":
            return await self.run_blocking(self._trigger, incident, fields)

        def create() -> PushResult:
            body = self._body(fields, creating=True)
            body |= {
                "service": {"id": self.options.service_id, "type": "service_reference"},
                "incident_key": KEY_PREFIX + str(incident.id),
            }
            if incident.description:
                body["body"] = {"type": "incident_body", "details": incident.description}
            # A create whose answer is lost may still land: the push then looks before creating again.
            with write_outcome():
                created = self._call("POST", "/incidents", json={"incident": body})["incident"]
            if fields.get("status") in ("acknowledged", "resolved"):
                created = self._call(
                    "PUT",
                    f"/incidents/{created['id']}",
                    json={"incident": {"type": "incident_reference", "status": fields["status"]}},
                )["incident"]
            return _result(created)

        return await self.run_blocking(create)

    def _trigger(self, incident: Incident, fields: dict[str, Any]) -> PushResult:
        dedup_key = KEY_PREFIX + str(incident.id)
        self._event(
            "trigger",
            dedup_key,
            payload={
                "summary": str(fields.get("title") or incident.title)[:1024],
                "source": "incident-hub",
                "severity": _EVENT_SEVERITY.get(str(fields.get("priority")), "error"),
                "custom_details": {
                    "hub_incident_id": str(incident.id),
                    "number": incident.number,
                    "description": incident.description,
                },
            },
        )
        self._status_event(dedup_key, fields)
        return PushResult(external_id=dedup_key)

    def _status_event(self, dedup_key: str, fields: dict[str, Any]) -> None:
        status = fields.get("status")
        if status == "acknowledged":
            self._event("acknowledge", dedup_key)
        elif status == "resolved":
            self._event("resolve", dedup_key)

    async def update(self, ref: ExternalRef, fields: dict[str, Any]) -> PushResult:
        if self.options.mode == "events":
            # Title, urgency and priority cannot be changed through the Events API: status only.
            await self.run_blocking(self._status_event, ref.external_id, fields)
            return PushResult(external_id=ref.external_id, external_key=ref.external_key, url=ref.url)

        def update() -> PushResult:
            body = self._body(fields, creating=False)
            if len(body) == 1:
                return PushResult(external_id=ref.external_id, external_key=ref.external_key, url=ref.url)
            updated = self._call("PUT", f"/incidents/{ref.external_id}", json={"incident": body})["incident"]
            return _result(updated)

        return await self.run_blocking(update)

    async def add_note(self, ref: ExternalRef, note: OutboundNote) -> str:
        incident_id = await self._incident_id(ref)
        if incident_id is None:
            log.info(
                "note not sent: PagerDuty events mode without a REST token", extra={"connector": self.id}
            )
            return ""
        created = await self._acall(
            "POST", f"/incidents/{incident_id}/notes", json={"note": {"content": note.body}}
        )
        return str(created["note"]["id"])

    async def count_notes(self, ref: ExternalRef, note: OutboundNote) -> int | None:
        """GET /incidents/{id}/notes (List notes for an incident: every note, unpaginated)."""
        incident_id = await self._incident_id(ref)
        if incident_id is None:
            return None
        found = await self._acall("GET", f"/incidents/{incident_id}/notes")
        return sum(1 for held in (found or {}).get("notes", []) if held.get("content") == note.body)

    async def _incident_id(self, ref: ExternalRef) -> str | None:
        """PagerDuty's incident id for a link (in events mode the link holds the dedup key)."""
        if self.options.mode != "events":
            return ref.external_id
        if self.config.credentials is None:
            return None
        found = await self._acall(
            "GET", "/incidents", params={"incident_key": ref.external_id, "date_range": "all"}
        )
        incidents = found.get("incidents", []) if found else []
        if not incidents:
            raise RetryableDeliveryError(f"PagerDuty has no incident with key {ref.external_id} yet")
        return str(incidents[0]["id"])

    async def fetch(self, ref: ExternalRef) -> ExternalChange:
        incident_id = await self._incident_id(ref)
        if incident_id is None:
            raise PermanentDeliveryError("PagerDuty events mode without a REST token cannot read incidents")
        data = (await self._acall("GET", f"/incidents/{incident_id}"))["incident"]
        common = {
            "connector_id": self.id,
            "vendor_timestamp": _time(data.get("updated_at") or data["created_at"]),
            "vendor_time_resolution": REST_TIME_RESOLUTION,
            "raw": data,
        }
        return self._incident_change(data, ChangeKind.SNAPSHOT, common)

    async def list_changed(self, since: datetime) -> AsyncIterator[ExternalChange]:
        """Incidents of the service changed since `since`, as snapshots.

        `GET /incidents?since=` filters by creation time, so a change to an older incident would be
        missed: the incidents come from the log entries in the window instead (every trigger,
        acknowledgement, resolve, reassignment, priority change and note writes one), then each is read once.
        """
        until = datetime.now(UTC).isoformat()
        changed: list[str] = []
        offset = 0
        while True:
            page = await self._acall(
                "GET",
                "/log_entries",
                params={
                    "since": since.astimezone(UTC).isoformat(),
                    "until": until,
                    "offset": offset,
                    "limit": 100,
                    "is_overview": "false",
                },
            )
            entries = page.get("log_entries", []) if page else []
            for entry in entries:
                incident = entry.get("incident") or {}
                service = entry.get("service") or {}
                if incident.get("id") and service.get("id") in (None, self.options.service_id):
                    changed.append(str(incident["id"]))
            if not page or not page.get("more") or not entries:
                break
            offset += len(entries)
        # The log is newest first: read it backwards, so incidents come in the order they first changed.
        in_order = list(dict.fromkeys(reversed(changed)))
        found = [
            (await self._acall("GET", f"/incidents/{incident_id}"))["incident"] for incident_id in in_order
        ]
        # Oldest first, as `GET /incidents` lists them.
        for data in sorted(found, key=lambda incident: str(incident.get("created_at", ""))):
            if (data.get("service") or {}).get("id") != self.options.service_id:
                continue
            stamp = data.get("updated_at") or data.get("last_status_change_at") or data["created_at"]
            yield self._incident_change(
                data,
                ChangeKind.SNAPSHOT,
                {
                    "connector_id": self.id,
                    "vendor_timestamp": _time(stamp),
                    "vendor_time_resolution": REST_TIME_RESOLUTION,
                    "raw": data,
                },
            )

    async def list_open(self) -> AsyncIterator[ExternalChange]:
        """Triggered and acknowledged incidents of the service, oldest first, 100 a page.

        Classic pagination stops at offset + limit = 10,000 (developer docs "Pagination"): past it, the
        listing goes on in `since`/`until` windows of creation time from the last incident read, each at
        most the 6 months `GET /incidents` allows, to now. An incident seen twice is given once.
        """
        if self.options.mode == "events" and self.config.credentials is None:
            raise PermanentDeliveryError("PagerDuty events mode without a REST token cannot list incidents")
        limit, most = 100, 10_000
        query: dict[str, Any] = {
            "statuses[]": ["triggered", "acknowledged"],
            "service_ids[]": [self.options.service_id],
            "sort_by": "created_at:asc",
            "limit": limit,
        }
        window: dict[str, str] = {"date_range": "all"}
        window_start: datetime | None = None
        window_end: datetime | None = None
        seen: set[str] = set()
        offset = 0
        while True:
            page = await self._acall("GET", "/incidents", params={**query, **window, "offset": offset})
            incidents = (page or {}).get("incidents") or []
            for data in incidents:
                if data["id"] in seen:
                    continue
                seen.add(data["id"])
                stamp = data.get("updated_at") or data.get("last_status_change_at") or data["created_at"]
                yield self._incident_change(
                    data,
                    ChangeKind.SNAPSHOT,
                    {"connector_id": self.id, "vendor_timestamp": _time(stamp), "raw": data},
                )
            offset += len(incidents)
            more = bool(incidents) and bool((page or {}).get("more"))
            if more and offset + limit <= most:
                continue
            now = datetime.now(UTC)
            if more:
                start = _time(incidents[-1]["created_at"])  # the next window starts at the last one read
                if window_start is not None and start <= window_start:
                    start = window_start + timedelta(seconds=1)  # 10,000 in one second: move on
            elif window_end is not None and window_end < now:
                start = window_end
            else:
                return
            window_start = start
            window_end = min(start + timedelta(days=180), now)
            window = {"since": start.isoformat(), "until": window_end.isoformat()}
            offset = 0

    async def health(self) -> Health:
        if self.options.mode == "events" and self.config.credentials is None:
            # The Events API has no read call: a key is proved only by sending an event.
            return Health(ok=True, detail="events mode: routing key configured (the Events API has no check)")
        started = datetime.now(UTC)
        try:
            await self._acall("GET", "/abilities")
        except (RetryableDeliveryError, PermanentDeliveryError) as error:
            return Health(ok=False, detail=str(error))
        elapsed = (datetime.now(UTC) - started).total_seconds() * 1000
        return Health(ok=True, detail="PagerDuty REST API answers", latency_ms=round(elapsed, 1))

    async def check_target(self) -> list[CheckResult]:
        """The service new incidents open on, and each escalation policy teams are handed to, exist."""
        if self.options.mode == "events" and self.config.credentials is None:
            return [CheckResult(name="service", ok=None, detail="not checked: events mode has no REST token")]
        wanted = [("service", "services", "service", self.options.service_id)] + [
            (f"escalation policy of {team}", "escalation_policies", "escalation_policy", policy)
            for team, policy in sorted(self.options.escalation_policies.items())
        ]
        results = []
        for name, path, key, object_id in wanted:
            try:
                found = (await self._acall("GET", f"/{path}/{object_id}"))[key]
            except DeliveryError as error:
                results.append(CheckResult(name=name, ok=False, detail=f"{object_id}: {error}"))
                continue
            results.append(
                CheckResult(name=name, ok=True, detail=f"{object_id} ({found.get('name')}) exists")
            )
        return results


@contextmanager
def _delivery_errors(host: str) -> Iterator[None]:
    """The client's exceptions as the retry policy's: HTTP errors by status, the rest as retryable."""
    try:
        yield
    except pagerduty.HttpError as error:
        failed = error.response
        if failed is not None:
            raise_for_status(failed.status_code, failed.text, failed.headers.get, host, rate_limit_wait)
        raise PermanentDeliveryError(f"{host}: {error}") from error
    except pagerduty.Error as error:
        raise RetryableDeliveryError(f"{host} unreachable: {error}") from error


def rate_limit_wait(header: HeaderGetter) -> float | None:
    """The wait a PagerDuty 429 asks for: `ratelimit-reset` seconds, else a `Retry-After`."""
    return parse_seconds(header("ratelimit-reset")) or parse_retry_after(header("retry-after"))


def _time(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


def _result(data: dict[str, Any]) -> PushResult:
    stamp = data.get("updated_at") or data.get("last_status_change_at") or data.get("created_at")
    return PushResult(
        external_id=data["id"],
        external_key=str(data.get("incident_number") or data["id"]),
        url=data.get("html_url"),
        vendor_timestamp=_time(stamp) if stamp else None,
        created_at=_time(data["created_at"]) if data.get("created_at") else None,
    )


_ = httpx2  # the client's transport; imported so a missing install fails at load, not at first call
