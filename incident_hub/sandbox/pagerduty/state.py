"""Incidents, their notes and log entries, and the changes people and integrations make to them.

Every change returns the `Occurrence`s it causes, each carrying a snapshot of the incident, so the caller
renders and sends the V3 webhooks after the change (outside the lock, in the order they happened).
Changes PagerDuty refuses raise `PagerDutyError`.
"""

from __future__ import annotations

import copy
import secrets
import string
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime

from incident_hub.sandbox.common import SandboxState
from incident_hub.sandbox.pagerduty.account import Account, seeded_account
from incident_hub.sandbox.pagerduty.model import (
    Actor,
    Incident,
    LogEntry,
    Note,
    Occurrence,
    PagerDutyError,
    Responder,
    Status,
    invalid,
    not_found,
)

_ALNUM = string.ascii_uppercase + string.digits


@dataclass
class PagerDutyState(SandboxState):
    """The sandbox's account and incidents; every method takes `lock` (routes run concurrently)."""

    api_token: str = ""
    account: Account = field(default_factory=seeded_account)
    subdomain: str = "incident-hub-sandbox"
    incidents: dict[str, Incident] = field(default_factory=dict)
    log: list[LogEntry] = field(default_factory=list)
    extra_signing_secrets: dict[str, list[str]] = field(default_factory=dict)
    """For a target's current secret, the other secrets it also signs with while they rotate."""

    # ---- lookups -------------------------------------------------------------------------------------

    def incident(self, incident_id: str) -> Incident:
        with self.lock:
            if incident_id not in self.incidents:
                raise not_found("Incident")
            return self.incidents[incident_id]

    def open_incident_with_key(self, service_id: str, incident_key: str) -> Incident | None:
        with self.lock:
            return next(
                (
                    i
                    for i in self.incidents.values()
                    if i.service_id == service_id
                    and i.incident_key == incident_key
                    and i.status != "resolved"
                ),
                None,
            )

    def _new_id(self, prefix: str = "P", length: int = 7) -> str:
        # Not the knobs' seeded random: a restarted sandbox must not reuse ids a hub database still holds.
        while True:
            candidate = prefix + "".join(secrets.choice(_ALNUM) for _ in range(length - len(prefix)))
            if candidate not in self.incidents:
                return candidate

    def _record(
        self,
        incident: Incident,
        kind: str,
        agent: Actor,
        channel: str,
        summary: str,
        *,
        note: str | None = None,
        assignees: tuple[str, ...] = (),
    ) -> str:
        at = datetime.now(UTC)
        entry = LogEntry(
            self._new_id("R", 14), kind, incident.id, at, agent, channel, summary, note, assignees
        )
        self.log.append(entry)
        return entry.id

    def _name(self, actor: Actor) -> str:
        if actor.kind == "user":
            return self.account.users[actor.id].name
        return self.account.services[actor.id].name

    # ---- changes -------------------------------------------------------------------------------------

    def create_incident(
        self,
        actor: Actor,
        channel: str,
        *,
        title: str,
        service_id: str,
        incident_key: str | None = None,
        urgency: str | None = None,
        priority_id: str | None = None,
        details: str | None = None,
        policy_id: str | None = None,
        assignee_ids: list[str] | None = None,
    ) -> tuple[Incident, list[Occurrence]]:
        with self.lock:
            service = self.account.services.get(service_id)
            if service is None:
                raise invalid("Service Not Found")
            key = incident_key or uuid.uuid4().hex  # PagerDuty gives every incident a key
            if self.open_incident_with_key(service.id, key) is not None:
                # Incident Creation API: "a subsequent Incident Create request will be denied with a 400
                # Bad Request" (developer-docs docs/REST-API/15-Incident-Creation-API.md). Code and text as
                # observed from the live API (PagerDuty does not document them).
                raise PagerDutyError(
                    400,
                    "Arguments Caused Error",
                    2002,
                    ["Open incident with matching dedup key already exists on this service"],
                )
            now = datetime.now(UTC)
            incident = Incident(
                id=self._new_id(),
                number=self.next_number(),
                title=title,
                service_id=service.id,
                policy_id=policy_id or service.escalation_policy_id,
                incident_key=key,
                urgency=urgency or "high",  # the service's urgency rule is "constant high"
                created_at=now,
                last_status_change_by=actor,
                first_trigger_log_entry_id="",
                priority_id=priority_id,
                details=details,
                updated_at=now,
                last_status_change_at=now,
            )
            self.incidents[incident.id] = incident
            how = "through the API" if channel == "api" else f"by {self._name(actor)}"
            incident.first_trigger_log_entry_id = self._record(
                incident, "trigger_log_entry", actor, channel, f"Triggered {how}"
            )
            if assignee_ids:
                incident.assigned_via = "direct_assignment"
                incident.assignments = [(user_id, now) for user_id in assignee_ids]
            else:
                self._assign_level(incident, 1, now)
            happened = [Occurrence("incident.triggered", now, actor, copy.deepcopy(incident))]
            # "When a user creates an incident assigned to themselves, the incident will be created in the
            # Acknowledged state" (docs/REST-API/15-Incident-Creation-API.md).
            if actor.kind == "user" and assignee_ids == [actor.id]:
                happened += self.acknowledge(incident.id, actor, channel)
            return incident, happened

    def acknowledge(self, incident_id: str, actor: Actor, channel: str) -> list[Occurrence]:
        with self.lock:
            incident = self.incident(incident_id)
            if incident.status == "resolved":
                raise PagerDutyError(400, "Incident Already Resolved", 1001)
            if incident.status == "acknowledged":
                return []  # acknowledging again changes nothing the hub can see
            now = self._status(incident, "acknowledged", actor)
            incident.acknowledgements.append((actor, now))
            self._record(
                incident, "acknowledge_log_entry", actor, channel, f"Acknowledged by {self._name(actor)}"
            )
            return [Occurrence("incident.acknowledged", now, actor, copy.deepcopy(incident))]

    def unacknowledge(self, incident_id: str, actor: Actor, channel: str) -> list[Occurrence]:
        with self.lock:
            incident = self.incident(incident_id)
            if incident.status != "acknowledged":
                raise PagerDutyError(400, "Incident is not Acknowledged", 1012)
            now = self._status(incident, "triggered", actor)
            incident.acknowledgements.clear()
            self._record(incident, "unacknowledge_log_entry", actor, channel, "Unacknowledged")
            return [Occurrence("incident.unacknowledged", now, actor, copy.deepcopy(incident))]

    def resolve(
        self, incident_id: str, actor: Actor, channel: str, resolution: str | None = None
    ) -> list[Occurrence]:
        with self.lock:
            incident = self.incident(incident_id)
            if incident.status == "resolved":
                return []  # resolving twice is accepted and changes nothing
            now = self._status(incident, "resolved", actor)
            incident.resolved_at = now
            # "assignments ... will be empty if the Incident.status is resolved" (Incident schema).
            incident.assignments.clear()
            incident.acknowledgements.clear()
            self._record(
                incident,
                "resolve_log_entry",
                actor,
                channel,
                f"Resolved by {self._name(actor)}",
                note=resolution,
            )
            return [Occurrence("incident.resolved", now, actor, copy.deepcopy(incident))]

    def reopen(
        self, incident_id: str, actor: Actor, channel: str, status: Status = "triggered"
    ) -> list[Occurrence]:
        """Reopen a resolved incident; "acknowledged" reopens it assigned to `actor` (PUT /incidents/{id})."""
        with self.lock:
            incident = self.incident(incident_id)
            if incident.status != "resolved":
                raise invalid("Incident is not resolved")
            if self.open_incident_with_key(incident.service_id, incident.incident_key) is not None:
                raise invalid("Open incident with matching dedup key already exists on this service")
            now = self._status(incident, "triggered", actor)
            incident.resolved_at = None
            incident.reopened_at = now
            self._assign_level(incident, 1, now)
            happened = [Occurrence("incident.reopened", now, actor, copy.deepcopy(incident))]
            if status == "acknowledged":
                incident.assigned_via = "direct_assignment"
                incident.assignments = [(actor.id, now)]
                happened += self.acknowledge(incident.id, actor, channel)
            return happened

    def reassign(self, incident_id: str, actor: Actor, channel: str, user_ids: list[str]) -> list[Occurrence]:
        with self.lock:
            incident = self._open(incident_id)
            now = datetime.now(UTC)
            incident.assigned_via = "direct_assignment"
            incident.assignments = [(user_id, now) for user_id in user_ids]
            self._retrigger(incident, actor, now)
            names = ", ".join(self.account.users[u].name for u in user_ids)
            self._record(
                incident,
                "assign_log_entry",
                actor,
                channel,
                f"Assigned to {names}",
                assignees=tuple(user_ids),
            )
            return [Occurrence("incident.reassigned", now, actor, copy.deepcopy(incident))]

    def escalate(self, incident_id: str, actor: Actor, channel: str, level: int) -> list[Occurrence]:
        with self.lock:
            incident = self._open(incident_id)
            if not 1 <= level <= len(self.account.policies[incident.policy_id].levels):
                raise PagerDutyError(400, "Cannot Escalate", 1006, [f"No escalation level {level}"])
            now = datetime.now(UTC)
            self._assign_level(incident, level, now)
            self._retrigger(incident, actor, now)
            self._record(
                incident,
                "escalate_log_entry",
                actor,
                channel,
                f"Escalated to level {level}",
                assignees=tuple(u for u, _ in incident.assignments),
            )
            return [Occurrence("incident.escalated", now, actor, copy.deepcopy(incident))]

    def delegate(self, incident_id: str, actor: Actor, channel: str, policy_id: str) -> list[Occurrence]:
        """Reassign to an escalation policy (webhook `incident.delegated`)."""
        with self.lock:
            incident = self._open(incident_id)
            now = datetime.now(UTC)
            incident.policy_id = policy_id
            self._assign_level(incident, 1, now)
            self._retrigger(incident, actor, now)
            self._record(
                incident,
                "assign_log_entry",
                actor,
                channel,
                "Assigned to escalation policy",
                assignees=tuple(u for u, _ in incident.assignments),
            )
            return [Occurrence("incident.delegated", now, actor, copy.deepcopy(incident))]

    def set_priority(self, incident_id: str, actor: Actor, priority_id: str | None) -> list[Occurrence]:
        with self.lock:
            incident = self.incident(incident_id)
            if incident.priority_id == priority_id:
                return []
            incident.priority_id = priority_id
            incident.updated_at = now = datetime.now(UTC)
            # No priority log entry type exists in the REST spec's LogEntry.type enum; none is recorded.
            return [Occurrence("incident.priority_updated", now, actor, copy.deepcopy(incident))]

    def set_urgency(self, incident_id: str, actor: Actor, channel: str, urgency: str) -> list[Occurrence]:
        with self.lock:
            incident = self.incident(incident_id)
            if incident.urgency != urgency:
                incident.urgency = urgency
                incident.updated_at = datetime.now(UTC)
                self._record(
                    incident, "urgency_change_log_entry", actor, channel, f"Urgency changed to {urgency}"
                )
            # V3 webhooks have no event type for urgency (or title) changes (webhooks overview, event types).
            return []

    def set_title(self, incident_id: str, title: str) -> list[Occurrence]:
        with self.lock:
            incident = self.incident(incident_id)
            if incident.title != title:
                incident.title = title
                incident.updated_at = datetime.now(UTC)
            return []

    def add_note(
        self, incident_id: str, actor: Actor, channel: str, content: str
    ) -> tuple[Note, list[Occurrence]]:
        with self.lock:
            incident = self.incident(incident_id)
            note = Note(self._new_id(), actor.id, content, datetime.now(UTC))
            incident.notes.append(note)
            self._record(incident, "annotate_log_entry", actor, channel, "Note added", note=content)
            return note, [
                Occurrence("incident.annotated", note.created_at, actor, copy.deepcopy(incident), note=note)
            ]

    def add_responder(self, incident_id: str, actor: Actor, user_id: str, message: str) -> list[Occurrence]:
        with self.lock:
            incident = self._open(incident_id)
            responder = Responder(user_id, actor.id, message, datetime.now(UTC))
            incident.responders.append(responder)
            return [
                Occurrence(
                    "incident.responder.added",
                    responder.requested_at,
                    actor,
                    copy.deepcopy(incident),
                    responder=responder,
                )
            ]

    # ---- helpers -------------------------------------------------------------------------------------

    def _open(self, incident_id: str) -> Incident:
        incident = self.incident(incident_id)
        if incident.status == "resolved":
            raise PagerDutyError(400, "Incident Already Resolved", 1001)
        return incident

    def _status(self, incident: Incident, status: Status, actor: Actor) -> datetime:
        now = datetime.now(UTC)
        incident.status = status
        incident.updated_at = incident.last_status_change_at = now
        incident.last_status_change_by = actor
        return now

    def _retrigger(self, incident: Incident, actor: Actor, now: datetime) -> None:
        # A new assignee has to acknowledge for themselves: reassigning puts the incident back in triggered.
        if incident.status == "acknowledged":
            self._status(incident, "triggered", actor)
            incident.acknowledgements.clear()
        incident.updated_at = now

    def _assign_level(self, incident: Incident, level: int, now: datetime) -> None:
        incident.escalation_level = level
        incident.assigned_via = "escalation_policy"
        targets = self.account.policies[incident.policy_id].levels[level - 1]
        incident.assignments = [(user_id, now) for user_id in targets]
