"""PagerDuty's JSON for incidents, notes and log entries (REST API v2), and V3 webhook events.

REST shapes follow the response examples in `rest-api-v2.openapiv3.json`; webhook shapes follow the
developer docs' `event.data` examples and real deliveries (`tests/vendor/pagerduty/webhooks-v3/`).
"""

from __future__ import annotations

import secrets
import string
from typing import Any

from incident_hub.sandbox.pagerduty.account import Account, Links, iso, iso_ms
from incident_hub.sandbox.pagerduty.model import Actor, Incident, LogEntry, Note, Occurrence
from incident_hub.sandbox.pagerduty.state import PagerDutyState

_ULID_ALPHABET = string.ascii_uppercase + string.digits


def actor_ref(account: Account, actor: Actor, links: Links) -> dict[str, Any]:
    if actor.kind == "user":
        return account.users[actor.id].ref(links)
    return account.services[actor.id].ref(links)


def incident_ref(incident: Incident, links: Links) -> dict[str, Any]:
    return links.ref("incident", incident.id, incident.title)


def incident_json(state: PagerDutyState, incident: Incident, links: Links) -> dict[str, Any]:
    """The REST `Incident` (GET/POST/PUT /incidents...)."""
    account = state.account
    users = account.users
    priority = account.priorities.get(incident.priority_id or "")
    return {
        **links.ref("incident", incident.id, f"[#{incident.number}] {incident.title}"),
        "type": "incident",
        "incident_number": incident.number,
        "title": incident.title,
        "created_at": iso(incident.created_at),
        "updated_at": iso(incident.updated_at),
        "status": incident.status,
        "incident_key": incident.incident_key,
        "service": account.services[incident.service_id].ref(links),
        "assignments": [{"at": iso(at), "assignee": users[u].ref(links)} for u, at in incident.assignments],
        "assigned_via": incident.assigned_via,
        "last_status_change_at": iso(incident.last_status_change_at),
        "last_status_change_by": actor_ref(account, incident.last_status_change_by, links),
        # `resolved_at` and `priority` are null when unset, as in the spec's own examples.
        "resolved_at": iso(incident.resolved_at) if incident.resolved_at else None,
        "first_trigger_log_entry": {
            **links.ref(
                "log_entry", incident.first_trigger_log_entry_id, "Triggered", collection="log_entries"
            ),
            "type": "trigger_log_entry_reference",
        },
        "alert_counts": {"all": 0, "triggered": 0, "resolved": 0},
        "is_mergeable": True,
        "incident_type": {"name": "incident_default"},
        "escalation_policy": account.policies[incident.policy_id].ref(links),
        "teams": [],
        "pending_actions": [],
        "acknowledgements": [
            {"at": iso(at), "acknowledger": actor_ref(account, who, links)}
            for who, at in incident.acknowledgements
        ],
        "priority": priority.ref(links) if priority else None,
        "resolve_reason": None,
        "urgency": incident.urgency,
        "incidents_responders": [
            {
                "state": r.state,
                "user": users[r.user_id].ref(links),
                "incident": incident_ref(incident, links),
                "updated_at": iso(r.requested_at),
                "message": r.message,
                "requester": users[r.requester_id].ref(links),
                "requested_at": iso(r.requested_at),
            }
            for r in incident.responders
        ],
        "responder_requests": [],
    }


def note_json(state: PagerDutyState, note: Note, links: Links) -> dict[str, Any]:
    return {
        "id": note.id,
        "user": state.account.users[note.user_id].ref(links),
        "channel": {"summary": "The PagerDuty website or APIs"},
        "content": note.content,
        "created_at": iso(note.created_at),
        "updated_at": iso(note.created_at),
    }


def log_entry_json(state: PagerDutyState, entry: LogEntry, links: Links) -> dict[str, Any]:
    incident = state.incidents[entry.incident_id]
    rendered: dict[str, Any] = {
        "id": entry.id,
        "type": entry.type,
        "summary": entry.summary,
        "self": f"{links.api}/log_entries/{entry.id}",
        "html_url": f"{links.web}/incidents/{incident.id}/log_entries/{entry.id}",
        "created_at": iso(entry.created_at),
        "agent": actor_ref(state.account, entry.agent, links),
        "channel": {"type": entry.channel},
        "service": state.account.services[incident.service_id].ref(links),
        "incident": incident_ref(incident, links),
        "teams": [],
        "contexts": [],
    }
    if entry.note is not None:
        rendered["note"] = entry.note
    if entry.type in ("assign_log_entry", "escalate_log_entry"):
        rendered["assignees"] = [state.account.users[u].ref(links) for u in entry.assignees]
    if entry.type == "trigger_log_entry":
        rendered["event_details"] = {"description": incident.title}
    return rendered


def event_body(state: PagerDutyState, happened: Occurrence, links: Links) -> dict[str, Any]:
    """The V3 webhook body `{"event": {...}}` for one occurrence."""
    return {
        "event": {
            # PagerDuty's event ids are 26-character ULID-like strings (webhook examples).
            "id": "01" + "".join(secrets.choice(_ULID_ALPHABET) for _ in range(24)),
            "event_type": happened.event_type,
            "resource_type": "incident",
            "occurred_at": iso_ms(happened.at),
            "agent": actor_ref(state.account, happened.agent, links),
            # `client` is null in every real delivery collected (zulip fixtures).
            "client": None,
            "data": _event_data(state, happened, links),
        }
    }


def _event_data(state: PagerDutyState, happened: Occurrence, links: Links) -> dict[str, Any]:
    account = state.account
    incident = happened.incident
    if happened.note is not None:
        return {
            "incident": incident_ref(incident, links),
            "id": happened.note.id,
            "content": happened.note.content,
            "trimmed": False,
            "type": "incident_note",
        }
    if happened.responder is not None:
        return {
            "incident": incident_ref(incident, links),
            "user": account.users[happened.responder.user_id].ref(links),
            "escalation_policy": account.policies[incident.policy_id].ref(links),
            "message": happened.responder.message,
            "state": happened.responder.state,
            "type": "incident_responder",
        }
    priority = account.priorities.get(incident.priority_id or "")
    # Key order and set as in the docs' `incident` event data (event-data/incident.json).
    return {
        "id": incident.id,
        "type": "incident",
        "self": f"{links.api}/incidents/{incident.id}",
        "html_url": f"{links.web}/incidents/{incident.id}",
        "number": incident.number,
        "status": incident.status,
        "incident_key": incident.incident_key,
        "created_at": iso(incident.created_at),
        "reopened_at": iso(incident.reopened_at) if incident.reopened_at else None,
        "title": incident.title,
        "incident_type": {"name": "incident_default"},
        "service": account.services[incident.service_id].ref(links),
        "assignees": [account.users[u].ref(links) for u, _ in incident.assignments],
        "escalation_policy": account.policies[incident.policy_id].ref(links),
        "teams": [],
        "priority": priority.ref(links) if priority else None,
        "urgency": incident.urgency,
        "conference_bridge": None,
        "resolve_reason": None,
    }
