"""Opsgenie: Alert API v2 through Opsgenie's own SDK (`opsgenie-sdk` 2.1.5), webhook-integration posts in.

Vendor quirks, each from its source:
- The SDK retries by itself (tenacity, 5 attempts, up to 30 s apart, on 429/500/502-599 and urllib3
  errors; opsgenie_sdk/api_client.py `ApiClient.retrying`). `retry_enabled = False` makes every call one
  attempt, so `sync/retry.py` is the only retry layer; tenacity still wraps the one failure in a
  `RetryError`, which `_call` unwraps. The SDK is synchronous (urllib3): calls run in a worker thread.
- The SDK trusts `ssl_ca_cert` (else certifi's bundle) and never reads REQUESTS_CA_BUNDLE.
  `Configuration()` is a shallow copy of a process-wide default: its `api_key` dict is replaced, never
  mutated, or two connectors would share a key. A float timeout is ignored (`rest.py` takes an int or a
  (connect, read) pair): a pair is passed.
- The SDK's recipient models drop their discriminator (`TeamRecipient(name=...)` serialises without
  `"type"`, which `Recipient` requires): recipients are written as plain dicts. Its response models drop
  properties they do not declare (a team responder's `name`), so snapshots carry no team; webhooks do.
- Writes answer 202 `{result, took, requestId}` and happen later (docs.opsgenie.com Alert API, "Get
  Request Status"): each write polls `GET /v2/alerts/requests/{requestId}` (404 until processed) and is
  done only when `isSuccess`; a request that ends failed is a `PermanentDeliveryError` with Opsgenie's
  `status` text ("Alert does not exist").
- An alias names at most one open alert: creating with the alias of an open alert raises its count
  instead ("Alert De-Duplication"), so create is idempotent; `identifierType=alias` finds only an open
  alert (alert search help). A closed alert never reopens: the hub reopening writes a new alert with the
  same alias, and the ref moves to it.
- Webhooks are not signed (vendor/opsgenie/NOTES.md): the integration sends a custom header with a shared
  secret, or basic-auth credentials. `alert.updatedAt` is nanoseconds (19 digits), `createdAt`
  milliseconds; `priority` is `"P3"` or `3` (zulip-fixtures/create.json).
- Rate limits are token buckets per request domain and plan, per minute and per second; a 429 names the
  bucket that ran dry in `X-RateLimit-Period-In-Sec` (60 or 1) with `X-RateLimit-State: THROTTLED`
  (docs.opsgenie.com "Rate Limiting"): the connector waits that period unless a `Retry-After` says
  otherwise. The limits depend on the plan: the connector keeps the hub's default pace.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import hmac
import json
import threading
import time
import uuid
from collections.abc import AsyncIterator, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

import opsgenie_sdk
import tenacity
import urllib3
from pydantic import BaseModel, ConfigDict, Field

from incident_hub.connectors.base import (
    MALFORMED,
    ChangeKind,
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
    RetryableDeliveryError,
    parse_retry_after,
    parse_seconds,
    raise_for_status,
    write_outcome,
)

MESSAGE_MAX = 130
NOTE_MAX = 25_000
DESCRIPTION_MAX = 15_000
HUB_ID_DETAIL = "incident-hub-id"
HUB_NUMBER_DETAIL = "incident-hub-number"
_STATUS_BY_ACTION = {"Acknowledge": "acknowledged", "UnAcknowledge": "open", "Close": "closed"}
# Request statuses that say the request may go through if sent again; any other failure is permanent.
_TRANSIENT_STATUS = ("try again", "temporarily", "timed out", "internal error")
# What a malformed body raises while it is read; pydantic's ValidationError is a ValueError.


class OpsgenieOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")

    user: str = Field(
        default="incident-hub",
        description="`user` of every write: Opsgenie reports it as the webhook's `alert.username`, which is "
        "how the hub recognises its own changes.",
    )
    source: str = Field(default="incident-hub", description="`source` of every write and new alert.")
    tags: list[str] = Field(default_factory=lambda: ["incident-hub"], description="Tags of new alerts.")
    teams: dict[str, str] = Field(
        default_factory=dict, description="Canonical team -> Opsgenie team name, where they differ."
    )
    users: dict[str, str] = Field(
        default_factory=dict,
        description="Canonical assignee -> Opsgenie username; when set, assignee <-> alert owner syncs.",
    )
    escalations: dict[str, str] = Field(
        default_factory=dict,
        description="Canonical team -> Opsgenie escalation name: handing an incident to the team escalates "
        "the alert to it (instead of adding the team).",
    )
    reopen_window_seconds: int = Field(
        default=86_400,
        ge=0,
        description="An alert created with the alias of an incident resolved at most this long ago reopens "
        "that incident instead of opening a new one.",
    )
    request_timeout_seconds: float = Field(
        default=10.0, gt=0, description="How long to wait for Opsgenie to process a 202 request."
    )
    webhook_auth: Literal["header", "basic"] = Field(
        default="header", description="How the webhook integration presents `webhook_secret`."
    )
    webhook_header: str = Field(default="X-Incident-Hub-Secret", description="Custom header with the secret.")
    webhook_username: str = Field(
        default="opsgenie", description="Basic-auth user name (webhook_auth: basic)."
    )
    web_url: str | None = Field(
        default=None, description="Opsgenie web app, e.g. https://acme.app.opsgenie.com, for alert links."
    )
    page_size: int = Field(default=100, ge=1, le=100, description="Alerts per list page.")


class OpsgenieConnector(Connector):
    kind = "opsgenie"
    Options = OpsgenieOptions
    options: OpsgenieOptions

    def __init__(self, config: ConnectorConfig) -> None:
        super().__init__(config)
        self._client: opsgenie_sdk.ApiClient | None = None
        self._alerts: opsgenie_sdk.AlertApi | None = None
        self._lock = threading.Lock()
        self._user_names = {og.lower(): canonical for canonical, og in self.options.users.items()}

    def default_mapping(self) -> MappingDocument:
        base = default_for(self.kind)
        if not self.options.users:
            return base
        return base.model_copy(update={"fields": {**base.fields, "assignee": "owner"}})

    # ---- client ---------------------------------------------------------------------------------------

    def alerts(self) -> opsgenie_sdk.AlertApi:
        with self._lock:
            if self._alerts is None:
                try:
                    key = self.config.credentials.read() if self.config.credentials else None
                except ConnectorError as error:
                    raise PermanentDeliveryError(f"connector {self.id}: {error}") from error
                if key is None:
                    raise PermanentDeliveryError(f"connector {self.id}: no credentials configured")
                conf = opsgenie_sdk.Configuration()
                conf.host = self.config.base_url.rstrip("/")
                conf.api_key = {"Authorization": key.get_secret_value()}
                conf.api_key_prefix = {"Authorization": "GenieKey"}
                conf.retry_enabled = False
                conf.verify_ssl = True
                conf.ssl_ca_cert = str(self.config.ca_bundle) if self.config.ca_bundle else None
                conf.connection_pool_maxsize = self.config.max_concurrency + 1
                self._client = opsgenie_sdk.ApiClient(configuration=conf)
                self._alerts = opsgenie_sdk.AlertApi(api_client=self._client)
            return self._alerts

    def _call(self, operation: str, **kw: Any) -> dict[str, Any]:
        """One SDK call, as plain JSON (camelCase keys), its failure typed for the retry policy."""
        api = self.alerts()
        timeout = max(1, round(self.config.timeout_seconds))
        try:
            try:
                result = getattr(api, operation)(_request_timeout=(timeout, timeout), **kw)
            except tenacity.RetryError as wrapped:
                failure = wrapped.last_attempt.exception()
                raise failure if failure is not None else wrapped from None
        except opsgenie_sdk.exceptions.OpenApiException as error:
            status = getattr(error, "status", None)
            if not status:  # status 0: the SDK's wrapper of an SSL error
                raise RetryableDeliveryError(
                    f"Opsgenie unreachable: {getattr(error, 'reason', error)}"
                ) from None
            body = getattr(error, "body", None) or ""
            headers = getattr(error, "headers", None) or {}
            raise_for_status(status, _error_text(body), headers.get, "Opsgenie", rate_limit_wait)
            raise PermanentDeliveryError(f"Opsgenie: {error}") from None
        except urllib3.exceptions.HTTPError as error:
            # Kept as the cause: whether the request left decides if a create's outcome is unknown.
            raise RetryableDeliveryError(f"Opsgenie unreachable: {type(error).__name__}: {error}") from error
        except ValueError as error:
            # The SDK parses every answer as JSON before looking at its status (api_client.__call_api).
            raise PermanentDeliveryError(
                f"Opsgenie answered no JSON (is {self.config.base_url!r} the API?): {error}"
            ) from None
        client = self._client
        assert client is not None
        answer = client.sanitize_for_serialization(result)
        return answer if isinstance(answer, dict) else {}

    def _write(self, operation: str, **kw: Any) -> tuple[str, dict[str, Any]]:
        """A write: its request id and the request's final status, once Opsgenie has processed it."""
        request_id = str(self._call(operation, **kw)["requestId"])
        return request_id, self._processed(request_id, operation)

    def _processed(self, request_id: str, operation: str) -> dict[str, Any]:
        deadline = time.monotonic() + self.options.request_timeout_seconds
        pause = 0.05
        while True:
            try:
                outcome = self._call("get_request_status", request_id=request_id).get("data") or {}
            except DeliveryError as error:
                # 404: "not processed yet"; a 429 or 5xx on the status is not a reason to write again.
                waiting = error.status_code == 404 or isinstance(error, RetryableDeliveryError)
                if not waiting or time.monotonic() >= deadline:
                    if error.status_code == 404:
                        raise RetryableDeliveryError(
                            f"Opsgenie {operation} request {request_id} not processed after "
                            f"{self.options.request_timeout_seconds:g} s"
                        ) from error
                    raise
                retry_after = getattr(error, "retry_after", None)
                time.sleep(min(retry_after or pause, max(0.0, deadline - time.monotonic())))
                pause = min(pause * 2, 1.0)
                continue
            if outcome.get("isSuccess"):
                return outcome
            text = str(outcome.get("status") or "failed")
            message = f"Opsgenie {outcome.get('action') or operation} request {request_id} failed: {text}"
            if any(hint in text.lower() for hint in _TRANSIENT_STATUS):
                raise RetryableDeliveryError(message)
            raise PermanentDeliveryError(message)

    async def close(self) -> None:
        if self._client is not None:
            await self.run_blocking(_close_pools, self._client.rest_client.pool_manager)
        await super().close()

    def _url(self, alert_id: str) -> str | None:
        if not self.options.web_url:
            return None
        return f"{self.options.web_url.rstrip('/')}/alert/detail/{alert_id}/details"

    def _is_self(self, username: Any, source: Any) -> bool:
        if isinstance(username, str) and username.strip().lower() == self.options.user.lower():
            return True
        return (
            isinstance(source, dict)
            and str(source.get("type", "")).lower() == "api"
            and source.get("name") == self.options.source
        )

    # ---- inbound --------------------------------------------------------------------------------------

    def verify_webhook(self, headers: Mapping[str, str], body: bytes) -> None:
        if self.config.webhook_secret is None:
            raise WebhookRejected(
                "no webhook secret configured for this connector; Opsgenie webhooks carry no signature"
            )
        try:
            secret = self.config.webhook_secret.read().get_secret_value().encode()
        except ConnectorError as error:
            raise WebhookRejected(f"cannot check the webhook secret: {error}", status=503) from None
        if self.options.webhook_auth == "basic":
            scheme, _, token = headers.get("authorization", "").partition(" ")
            if scheme.lower() != "basic" or not token:
                raise WebhookRejected("missing basic auth")
            try:
                user, _, password = base64.b64decode(token.strip(), validate=True).partition(b":")
            except (binascii.Error, ValueError):
                raise WebhookRejected("basic auth is not base64") from None
            user_ok = hmac.compare_digest(user, self.options.webhook_username.encode())
            if not (hmac.compare_digest(password, secret) and user_ok):
                raise WebhookRejected("basic auth does not match")
            return
        name = self.options.webhook_header
        presented = headers.get(name.lower())
        if not presented:
            raise WebhookRejected(f"missing {name}")
        if not hmac.compare_digest(presented.encode(), secret):
            raise WebhookRejected(f"{name} does not match")

    def stored_body(self, body: bytes) -> bytes:
        """Escalate notices repeat the integration's custom headers (`headers`), the shared secret among
        them: the inbox keeps the body without them."""
        try:
            payload = json.loads(body)
        except ValueError:
            return body
        if not isinstance(payload, dict) or "headers" not in payload:
            return body
        payload.pop("headers")
        return json.dumps(payload, separators=(",", ":")).encode()

    def webhook_event_id(self, headers: Mapping[str, str], body: bytes) -> str | None:
        """`<alertId>:<action>:<alert.updatedAt>`: the same for Opsgenie's retries of one delivery."""
        try:
            payload = json.loads(body)
            alert = payload["alert"]
            stamp = alert.get("updatedAt") or payload.get("escalationId")
            if stamp is None:
                return None
            return f"{alert['alertId']}:{payload['action']}:{stamp}"[:200]
        except MALFORMED:
            return None

    def parse_webhook(self, headers: Mapping[str, str], body: bytes) -> list[ExternalChange]:
        try:
            payload = json.loads(body)
            if not isinstance(payload, dict):
                raise TypeError("the body is not a JSON object")
            action = payload["action"]
            alert = payload["alert"]
            if not isinstance(action, str) or not isinstance(alert, dict):
                raise TypeError("action is not a string or alert not an object")
            alert_id = alert["alertId"]
            if not isinstance(alert_id, str) or not alert_id:
                raise TypeError("alert.alertId is not a string")
        except MALFORMED as error:
            raise WebhookParseError(f"not an Opsgenie webhook: {type(error).__name__}: {error}") from None
        if action == "Escalate":
            # Escalation notices carry no alert state and no time (zulip-fixtures/escalate.json).
            return []
        try:
            return [self._change(action, alert, payload)]
        except MALFORMED as error:
            raise WebhookParseError(f"Opsgenie {action}: {type(error).__name__}: {error}") from None

    def _change(self, action: str, alert: dict[str, Any], payload: dict[str, Any]) -> ExternalChange:
        username = alert.get("username")
        if username is not None and not isinstance(username, str):
            raise TypeError("alert.username is not a string")
        alert_id = str(alert["alertId"])
        common: dict[str, Any] = {
            "connector_id": self.id,
            "external_id": alert_id,
            "external_key": _text(alert.get("tinyId")),
            "url": self._url(alert_id),
            "vendor_timestamp": _nanoseconds(alert["updatedAt"]),
            "actor": username,
            "actor_is_self": self._is_self(username, payload.get("source")),
            "event_id": f"{alert_id}:{action}:{alert['updatedAt']}",
            "raw": payload,
        }
        if action == "AddNote":
            note = alert["note"]
            if not isinstance(note, str):
                raise TypeError("alert.note is not a string")
            return ExternalChange(
                **common,
                kind=ChangeKind.NOTE,
                # Notes have no id in webhooks; the alert's time of the note is unique per alert.
                note=ExternalNote(
                    external_comment_id=f"{alert_id}@{alert['updatedAt']}", body=note, author=username
                ),
            )
        if action == "Delete":
            return ExternalChange(**common, kind=ChangeKind.DELETED)
        fields = self._webhook_fields(action, alert)
        if action != "Create":
            return ExternalChange(**common, kind=ChangeKind.UPDATED, fields=fields)
        alias = _text(alert.get("alias"))
        details = alert.get("details")
        return ExternalChange(
            **common,
            kind=ChangeKind.CREATED,
            fields=fields,
            hub_incident_id=_hub_id(alias, alert_id, details),
            # A new alert with the alias of a closed one is that alert firing again (Alert De-Duplication
            # applies to open alerts only): the hub reopens the incident within this window.
            reopen_window_seconds=float(self.options.reopen_window_seconds),
        )

    def _webhook_fields(self, action: str, alert: dict[str, Any]) -> dict[str, Any]:
        """The mapped vendor fields an action sets; other actions (tags, recipients, custom) set none."""
        fields: dict[str, Any] = {}
        if action == "Create":
            fields["status"] = "open"
            fields["message"] = _text(alert.get("message"))
            if alert.get("description") is not None:
                fields["description"] = _text(alert.get("description"))
            if alert.get("priority") is not None:
                fields["priority"] = _priority(alert["priority"])
            teams = alert.get("teams") or []
            if not isinstance(teams, list):
                raise TypeError("alert.teams is not a list")
            if teams:
                fields["team"] = self._canonical_team(teams[0])
        elif action in _STATUS_BY_ACTION:
            fields["status"] = _STATUS_BY_ACTION[action]
        elif action == "UpdatePriority":
            fields["priority"] = _priority(alert["priority"])
        elif action == "UpdateMessage":
            fields["message"] = _text(alert["message"])
        elif action == "UpdateDescription":
            fields["description"] = _text(alert["description"])
        elif action == "AddTeam":
            fields["team"] = self._canonical_team(alert["team"])
        elif action == "AssignOwnership":
            fields["owner"] = self._canonical_user(alert["owner"])
        elif action == "TakeOwnership":
            fields["owner"] = self._canonical_user(alert["username"])
        return fields

    def _canonical_team(self, name: Any) -> str:
        if not isinstance(name, str):
            raise TypeError("a team is not a string")
        return self.team_of(self.options.teams).get(name, name)

    def _canonical_user(self, username: Any) -> str:
        if not isinstance(username, str):
            raise TypeError("an owner is not a string")
        return self._user_names.get(username.lower(), username)

    def _snapshot(self, alert: dict[str, Any]) -> ExternalChange:
        """An alert from the API (`Alert` or `BaseAlert`) as a SNAPSHOT change."""
        alert_id = str(alert["id"])
        fields: dict[str, Any] = {"status": _status(alert), "message": alert.get("message")}
        if alert.get("priority"):
            fields["priority"] = _priority(alert["priority"])
        if "description" in alert:
            fields["description"] = alert.get("description") or None
        if self.options.users and "owner" in alert:
            fields["owner"] = self._canonical_user(alert.get("owner") or "") or None
        details = alert.get("details")
        stamp = alert.get("updatedAt") or alert["createdAt"]
        return ExternalChange(
            connector_id=self.id,
            external_id=alert_id,
            external_key=_text(alert.get("tinyId")),
            url=self._url(alert_id),
            kind=ChangeKind.SNAPSHOT,
            fields=fields,
            vendor_timestamp=_iso(stamp),
            hub_incident_id=_hub_id(_text(alert.get("alias")), alert_id, details),
            raw=alert,
        )

    # ---- outbound -------------------------------------------------------------------------------------

    def _actor(self) -> dict[str, str]:
        return {"user": self.options.user, "source": self.options.source}

    def _team_name(self, canonical: str) -> str:
        return self.team_targets(self.options.teams).get(canonical, canonical)

    def _get(self, identifier: str, identifier_type: str = "id") -> dict[str, Any]:
        found = self._call("get_alert", identifier=identifier, identifier_type=identifier_type)["data"]
        assert isinstance(found, dict)
        return found

    def _result(self, alert: dict[str, Any]) -> PushResult:
        stamp, created = alert.get("updatedAt"), alert.get("createdAt")
        return PushResult(
            external_id=str(alert["id"]),
            external_key=_text(alert.get("tinyId")),
            url=self._url(str(alert["id"])),
            vendor_timestamp=_iso(stamp) if stamp else None,
            created_at=_iso(created) if created else None,
        )

    def _create(self, body: dict[str, Any]) -> str:
        """POST /v2/alerts; the id of the alert Opsgenie made (or counted, for an open alias)."""
        payload = _payload(opsgenie_sdk.CreateAlertPayload, **body, **self._actor())
        _, outcome = self._write("create_alert", create_alert_payload=payload)
        alert_id = outcome.get("alertId")
        if not alert_id:
            raise PermanentDeliveryError(f"Opsgenie created no alert: {outcome.get('status')}")
        return str(alert_id)

    def _move(self, alert_id: str, target: str, current: dict[str, Any]) -> None:
        """Acknowledge, unacknowledge or close, from the alert's `current` state."""
        now = _status(current)
        if target == now:
            return
        actor = self._actor()
        if target == "closed":
            self._write(
                "close_alert",
                identifier=alert_id,
                close_alert_payload=_payload(opsgenie_sdk.CloseAlertPayload, **actor),
            )
        elif target == "acknowledged":
            payload = _payload(opsgenie_sdk.AcknowledgeAlertPayload, **actor)
            self._write("acknowledge_alert", identifier=alert_id, acknowledge_alert_payload=payload)
        elif target == "open" and now == "acknowledged":
            payload = _payload(opsgenie_sdk.UnAcknowledgeAlertPayload, **actor)
            self._write("un_acknowledge_alert", identifier=alert_id, un_acknowledge_alert_payload=payload)
        else:
            raise PermanentDeliveryError(f"Opsgenie alert {alert_id} cannot move from {now} to {target}")

    def _edit(self, alert_id: str, fields: dict[str, Any]) -> None:
        """Write message, description, priority, team and owner (those given); status apart."""
        if fields.get("message"):
            payload = _payload(
                opsgenie_sdk.UpdateAlertMessagePayload, message=_message(str(fields["message"]))
            )
            self._write("update_alert_message", identifier=alert_id, update_alert_message_payload=payload)
        if fields.get("description"):
            text = str(fields["description"])[:DESCRIPTION_MAX]
            payload = _payload(opsgenie_sdk.UpdateAlertDescriptionPayload, description=text)
            self._write(
                "update_alert_description", identifier=alert_id, update_alert_description_payload=payload
            )
        if fields.get("priority"):
            payload = _payload(opsgenie_sdk.UpdateAlertPriorityPayload, priority=str(fields["priority"]))
            self._write("update_alert_priority", identifier=alert_id, update_alert_priority_payload=payload)
        team = fields.get("team")
        if team:
            escalation = self.options.escalations.get(str(team))
            if escalation:
                body = {"escalation": {"type": "escalation", "name": escalation}, **self._actor()}
                self._write("escalate_alert", identifier=alert_id, escalate_alert_to_next_payload=body)
            else:
                body = {"team": {"type": "team", "name": self._team_name(str(team))}, **self._actor()}
                self._write("add_team", identifier=alert_id, add_team_to_alert_payload=body)
        owner = self.options.users.get(str(fields.get("owner"))) if fields.get("owner") else None
        if owner:
            body = {"owner": {"type": "user", "username": owner}, **self._actor()}
            self._write("assign_alert", identifier=alert_id, assign_alert_payload=body)

    async def find(self, incident: Incident) -> PushResult | None:
        found = await self.find_all(incident)
        return found[0] if found else None

    async def find_all(self, incident: Incident) -> list[PushResult]:
        """Every alert carrying the incident's id, open or closed, oldest first. The alias names only an
        open alert (alert search help), and one push may create and close the alert: the alerts are
        searched by the `incident-hub-id` detail (search fields `details.key`, `details.value`), then,
        finding none, by alias (an open alert made without the detail)."""
        hub_id = str(incident.id)

        def find_all() -> list[PushResult]:
            found: list[PushResult] = []
            offset, limit = 0, self.options.page_size
            while True:
                page = self._call(
                    "list_alerts",
                    query=f'details.key:{HUB_ID_DETAIL} AND details.value:"{hub_id}"',
                    sort="createdAt",
                    order="asc",
                    offset=offset,
                    limit=limit,
                )
                alerts = page.get("data") or []
                # A value search matches any detail: the alias tells the hub's alert for this incident.
                found += [self._result(a) for a in alerts if _text(a.get("alias")) == hub_id]
                if len(alerts) < limit:
                    break
                offset += len(alerts)
            if found:
                return found
            try:
                return [self._result(self._get(hub_id, "alias"))]
            except DeliveryError as error:
                if error.status_code == 404:
                    return []
                raise

        return await self.run_blocking(find_all)

    async def create(self, incident: Incident, fields: dict[str, Any]) -> PushResult:
        def create() -> PushResult:
            body: dict[str, Any] = {
                "message": _message(str(fields.get("message") or incident.title)),
                "alias": str(incident.id),
                "tags": list(self.options.tags),
                "details": {HUB_ID_DETAIL: str(incident.id), HUB_NUMBER_DETAIL: incident.number},
            }
            description = fields.get("description") or incident.description
            if description:
                body["description"] = str(description)[:DESCRIPTION_MAX]
            if fields.get("priority"):
                body["priority"] = str(fields["priority"])
            if fields.get("team"):
                body["responders"] = [{"type": "team", "name": self._team_name(str(fields["team"]))}]
            # An alias dedups open alerts only: a create whose answer is lost is looked for before the
            # next one, in case the alert it made was closed meanwhile.
            with write_outcome():
                alert_id = self._create(body)
            if fields.get("owner"):
                self._edit(alert_id, {"owner": fields["owner"]})
            if fields.get("status") in ("acknowledged", "closed"):
                self._move(alert_id, str(fields["status"]), {"status": "open", "acknowledged": False})
            return self._result(self._get(alert_id))

        return await self.run_blocking(create)

    async def update(self, ref: ExternalRef, fields: dict[str, Any]) -> PushResult:
        def update() -> PushResult:
            alert_id = ref.external_id
            target = fields.get("status")
            edits = {k: v for k, v in fields.items() if k != "status"}
            if target is None:
                self._edit(alert_id, edits)
                return PushResult(external_id=alert_id, external_key=ref.external_key, url=ref.url)
            current = self._get(alert_id)
            if current.get("status") == "closed" and target != "closed":
                alert_id, current = self._refire(current, edits), {"status": "open", "acknowledged": False}
                edits = {k: v for k, v in edits.items() if k in ("team", "owner")}
            self._edit(alert_id, edits)
            self._move(alert_id, str(target), current)
            return self._result(self._get(alert_id))

        return await self.run_blocking(update)

    def _refire(self, closed: dict[str, Any], edits: dict[str, Any]) -> str:
        """Opsgenie cannot reopen an alert: a new one with the same alias and content stands for it."""
        body: dict[str, Any] = {
            "message": _message(str(edits.get("message") or closed.get("message") or "reopened")),
            "alias": closed.get("alias") or closed["id"],
            "tags": list(closed.get("tags") or self.options.tags),
            "details": dict(closed.get("details") or {}),
            "priority": str(edits.get("priority") or closed.get("priority") or "P3"),
        }
        description = edits.get("description") or closed.get("description")
        if description:
            body["description"] = str(description)[:DESCRIPTION_MAX]
        responders = [
            {"type": r["type"], "id": r["id"]}
            for r in closed.get("responders") or []
            if isinstance(r, dict) and r.get("type") == "team" and r.get("id")
        ]
        if responders:
            body["responders"] = responders
        return self._create(body)

    async def add_note(self, ref: ExternalRef, note: OutboundNote) -> str:
        def add_note() -> str:
            payload = _payload(opsgenie_sdk.AddNoteToAlertPayload, note=note.body[:NOTE_MAX], **self._actor())
            request_id, _ = self._write(
                "add_note", identifier=ref.external_id, add_note_to_alert_payload=payload
            )
            return request_id

        return await self.run_blocking(add_note)

    async def count_notes(self, ref: ExternalRef, note: OutboundNote) -> int | None:
        """GET /v2/alerts/{id}/notes, every page (100 a page, `paging.next` while more)."""
        text = note.body[:NOTE_MAX]

        def count_notes() -> int:
            held, offset = 0, None
            while True:
                page = self._call(
                    "list_notes",
                    identifier=ref.external_id,
                    identifier_type="id",
                    limit=100,
                    order="asc",
                    **({"offset": offset, "direction": "next"} if offset else {}),
                )
                notes = page.get("data") or []
                held += sum(1 for n in notes if n.get("note") == text)
                if not notes or not (page.get("paging") or {}).get("next"):
                    return held
                offset = str(notes[-1].get("offset"))

        return await self.run_blocking(count_notes)

    async def fetch(self, ref: ExternalRef) -> ExternalChange:
        return self._snapshot(await self.run_blocking(self._get, ref.external_id))

    async def list_changed(self, since: datetime) -> AsyncIterator[ExternalChange]:
        # Search syntax takes Unix milliseconds and >= (alert search help); rounded down, the first
        # millisecond is read again, never missed. Sorted by updatedAt ascending, an alert changed while
        # paging moves to the end and is read again.
        query = f"updatedAt>={int(since.timestamp() * 1000)}"
        offset, limit = 0, self.options.page_size
        while True:
            page = await self.run_blocking(
                self._call,
                "list_alerts",
                query=query,
                sort="updatedAt",
                order="asc",
                offset=offset,
                limit=limit,
            )
            alerts = page.get("data") or []
            for alert in alerts:
                yield self._snapshot(alert)
            if len(alerts) < limit:
                return
            offset += len(alerts)

    async def list_open(self) -> AsyncIterator[ExternalChange]:
        """Open alerts (`query=status:open`, acknowledged or not), oldest first, `page_size` a page (100 at
        most, list alerts `limit`). The answer's `paging.next` says whether another page exists, so a
        listing of exactly 100·k alerts asks for no empty page."""
        offset, limit = 0, self.options.page_size
        while True:
            page = await self.run_blocking(
                self._call,
                "list_alerts",
                query="status:open",
                sort="createdAt",
                order="asc",
                offset=offset,
                limit=limit,
            )
            alerts = page.get("data") or []
            for alert in alerts:
                yield self._snapshot(alert)
            if not alerts or not (page.get("paging") or {}).get("next"):
                return
            offset += len(alerts)

    async def health(self) -> Health:
        started = time.monotonic()
        try:
            await self.run_blocking(self._call, "list_alerts", limit=1)
        except DeliveryError as error:
            return Health(ok=False, detail=str(error))
        elapsed = round((time.monotonic() - started) * 1000, 1)
        return Health(ok=True, detail="Opsgenie Alert API answers", latency_ms=elapsed)


# ---- values ---------------------------------------------------------------------------------------------


def rate_limit_wait(header: HeaderGetter) -> float | None:
    """The wait an Opsgenie 429 asks for: `Retry-After`, else the throttled bucket's period."""
    return parse_retry_after(header("retry-after")) or parse_seconds(header("x-ratelimit-period-in-sec"))


def _status(alert: Mapping[str, Any]) -> str:
    """Opsgenie's status and acknowledged flag as the one vendor field the mapping reads."""
    if alert.get("status") == "closed":
        return "closed"
    return "acknowledged" if alert.get("acknowledged") else "open"


def _priority(value: Any) -> str:
    """`"P3"` (API) or `3` (some webhook deliveries) as `"P3"`."""
    if isinstance(value, bool):
        raise TypeError("priority is a boolean")
    if isinstance(value, int):
        return f"P{value}"
    if isinstance(value, str):
        return value
    raise TypeError(f"priority is a {type(value).__name__}")


def _text(value: Any) -> str | None:
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, int | float) and not isinstance(value, bool):
        return str(value)
    raise TypeError(f"expected a string, got {type(value).__name__}")


def _message(title: str) -> str:
    """One line of at most 130 characters (Alert API, Create Alert: message limit)."""
    line = " ".join(title.split())
    return line if len(line) <= MESSAGE_MAX else line[: MESSAGE_MAX - 1] + "…"


def _nanoseconds(value: Any) -> datetime:
    """`alert.updatedAt`: 19-digit nanoseconds, an exact integer (never through a float)."""
    if isinstance(value, str) and value.isdigit():
        value = int(value)
    if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
        raise TypeError("alert.updatedAt is not nanoseconds")
    seconds, nanos = divmod(value, 1_000_000_000)
    return datetime.fromtimestamp(seconds, UTC) + timedelta(microseconds=nanos // 1000)


def _iso(value: Any) -> datetime:
    if isinstance(value, datetime):
        moment = value
    else:
        moment = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _hub_id(alias: str | None, alert_id: str, details: Any) -> str | None:
    """Our incident id: the `incident-hub-id` detail, else an alias that is a UUID (not Opsgenie's own
    default alias, which is the alert id)."""
    detail = details.get(HUB_ID_DETAIL) if isinstance(details, dict) else None
    for candidate in (detail, alias if alias != alert_id else None):
        if isinstance(candidate, str):
            try:
                return str(uuid.UUID(candidate))
            except ValueError:
                continue
    return None


def _payload(model: Any, **values: Any) -> Any:
    """An SDK request model; a value its setters refuse (a priority not P1..P5) is a permanent error."""
    try:
        return model(**values)
    except ValueError as error:
        raise PermanentDeliveryError(f"Opsgenie SDK refused {model.__name__}: {error}") from None


def _close_pools(manager: urllib3.PoolManager) -> None:
    """Close idle keep-alive connections (they would hold a server's shutdown up): urllib3 2's
    `PoolManager.clear()` forgets its pools without closing them, leaving that to the garbage collector."""
    pools = manager.pools
    for key in list(pools.keys()):
        with contextlib.suppress(KeyError):
            pools[key].close()
    manager.clear()


def _error_text(body: Any) -> str:
    """Opsgenie's error `message` (and field `errors`), or the raw body."""
    raw = body.decode(errors="replace") if isinstance(body, bytes) else str(body)
    try:
        parsed = json.loads(raw)
    except ValueError:
        return raw
    if not isinstance(parsed, dict) or "message" not in parsed:
        return raw
    errors = parsed.get("errors")
    return f"{parsed['message']}" + (f" {json.dumps(errors)}" if errors else "")
