"""The instance: users, groups, incidents and their journal, and what the out-of-box rules do on a write.

Field names, defaults and choices follow the vendor's documents (vendor/servicenow/): a new incident has
every field of the Table API examples (`table-api-examples/POST_incident.response.json`), priority comes
from impact and urgency (docs/def-prio-lookup-rules.md), a Resolved or Closed incident needs
`close_code` and `close_notes` (docs/resolve-and-close-an-incident.md), and writing `comments` or
`work_notes` appends a journal entry. Every write returns a `Change` the webhook sender turns into the
business rule's REST message.
"""

from __future__ import annotations

import copy
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from incident_hub.sandbox.common import SandboxState

TIME_FORMAT = "%Y-%m-%d %H:%M:%S"

# Out-of-box choices (incident-choice-values.json).
STATES = {"1": "New", "2": "In Progress", "3": "On Hold", "6": "Resolved", "7": "Closed", "8": "Canceled"}
IMPACTS = {"1": "1 - High", "2": "2 - Medium", "3": "3 - Low"}
PRIORITIES = {"1": "1 - Critical", "2": "2 - High", "3": "3 - Moderate", "4": "4 - Low", "5": "5 - Planning"}
CHOICES = {
    "state": STATES,
    "incident_state": STATES,
    "impact": IMPACTS,
    "urgency": IMPACTS,
    "priority": PRIORITIES,
}
# Priority lookup rules, default data (docs/def-prio-lookup-rules.md): (impact, urgency) -> priority.
PRIORITY_LOOKUP = {
    ("1", "1"): "1",
    ("1", "2"): "2",
    ("1", "3"): "3",
    ("2", "1"): "2",
    ("2", "2"): "3",
    ("2", "3"): "4",
    ("3", "1"): "3",
    ("3", "2"): "4",
    ("3", "3"): "5",
}
# Reference fields of an incident and the table each points into.
REFERENCES = {
    "assignment_group": "sys_user_group",
    "assigned_to": "sys_user",
    "caller_id": "sys_user",
    "opened_by": "sys_user",
    "resolved_by": "sys_user",
    "closed_by": "sys_user",
    "sys_domain": "sys_user_group",
    "location": "cmn_location",
    "company": "core_company",
    "cmdb_ci": "cmdb_ci",
    "problem_id": "problem",
    "parent_incident": "incident",
    "business_service": "cmdb_ci_service",
    "rfc": "change_request",
    "caused_by": "change_request",
    "parent": "task",
}
JOURNAL_FIELDS = ("comments", "work_notes")
# Set by the instance, never by a write.
SYSTEM_FIELDS = frozenset(
    {
        "sys_id",
        "number",
        "sys_created_on",
        "sys_created_by",
        "sys_updated_on",
        "sys_updated_by",
        "sys_mod_count",
    }
)
# The fields of a new incident as POST_incident.response.json shows them, then `hold_reason` (On Hold).
NEW_INCIDENT: dict[str, str] = {
    **dict.fromkeys(
        [
            "location",
            "expected_start",
            "close_notes",
            "additional_assignee_list",
            "correlation_id",
            "sys_tags",
            "description",
            "group_list",
            "delivery_plan",
            "work_notes_list",
            "business_service",
            "follow_up",
            "closed_at",
            "sla_due",
            "delivery_task",
            "parent",
            "work_end",
            "closed_by",
            "work_start",
            "calendar_stc",
            "business_duration",
            "activity_due",
            "correlation_display",
            "company",
            "due_date",
            "assignment_group",
            "caller_id",
            "comments_and_work_notes",
            "parent_incident",
            "user_input",
            "approval_set",
            "rfc",
            "order",
            "resolved_by",
            "approval_history",
            "problem_id",
            "work_notes",
            "calendar_duration",
            "close_code",
            "caused_by",
            "resolved_at",
            "assigned_to",
            "business_stc",
            "wf_activity",
            "cmdb_ci",
            "subcategory",
            "rejection_goto",
            "watch_list",
            "time_worked",
            "comments",
            "short_description",
            "hold_reason",
        ],
        "",
    ),
    "upon_approval": "proceed",
    "reopen_count": "0",
    "impact": "3",
    "urgency": "3",
    "priority": "5",
    "sys_domain": "global",
    "category": "inquiry",
    "incident_state": "1",
    "state": "1",
    "active": "true",
    "knowledge": "false",
    "made_sla": "true",
    "reassignment_count": "0",
    "child_incidents": "0",
    "notify": "1",
    "upon_reject": "cancel",
    "approval": "not requested",
    "severity": "3",
    "sys_domain_path": "/",
    "sys_class_name": "incident",
    "contact_type": "",
    "escalation": "0",
}


class ServiceNowError(Exception):
    """A refused request, answered with ServiceNow's error body."""

    def __init__(self, status: int, message: str, detail: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.detail = detail


def new_sys_id() -> str:
    return uuid.uuid4().hex  # 32 lower-case hex characters, as ServiceNow's


def now_text() -> str:
    return datetime.now(UTC).strftime(TIME_FORMAT)


@dataclass
class Change:
    """One record write, for the business rule: before and after, and the journal entries it added."""

    operation: str  # insert | update
    before: dict[str, str]
    after: dict[str, str]
    journal: list[dict[str, str]]

    @property
    def changed(self) -> list[str]:
        return sorted(
            k for k, v in self.after.items() if k not in SYSTEM_FIELDS and self.before.get(k, "") != v
        )


@dataclass
class ServiceNowState(SandboxState):
    """Tables by name, each sys_id -> field values (strings); every method takes `lock`."""

    username: str = "incident.hub"
    password: str = ""
    instance_number: int = 10000
    tables: dict[str, dict[str, dict[str, str]]] = field(default_factory=dict)
    webhook_mode: str = "header"  # header | basic
    webhook_header: str = "X-Incident-Hub-Secret"

    # ---- lookups -------------------------------------------------------------------------------------

    def table(self, name: str) -> dict[str, dict[str, str]]:
        with self.lock:
            if name not in self.tables:
                raise ServiceNowError(400, f"Invalid table {name}")
            return self.tables[name]

    def record(self, table: str, sys_id: str) -> dict[str, str]:
        with self.lock:
            found = self.table(table).get(sys_id)
            if found is None:
                raise ServiceNowError(
                    404, "No Record found", "Record doesn't exist or ACL restricts the record retrieval"
                )
            return found

    def user_named(self, user_name: str) -> dict[str, str] | None:
        with self.lock:
            return next((u for u in self.tables["sys_user"].values() if u["user_name"] == user_name), None)

    def display(self, table: str, sys_id: str) -> str:
        """A referenced record's display value (name, or number for task tables)."""
        with self.lock:
            found = self.tables.get(table, {}).get(sys_id)
        if found is None:
            return sys_id
        return found.get("name") or found.get("number") or sys_id

    def incidents(self) -> list[dict[str, str]]:
        with self.lock:
            return [copy.deepcopy(r) for r in self.tables["incident"].values()]

    def journal(self, sys_id: str) -> list[dict[str, str]]:
        with self.lock:
            entries = [e for e in self.tables["sys_journal_field"].values() if e["element_id"] == sys_id]
        return sorted(entries, key=lambda e: (e["sys_created_on"], int(e["_seq"])))

    # ---- writes --------------------------------------------------------------------------------------

    def insert_incident(self, user_name: str, values: dict[str, Any]) -> Change:
        with self.lock:
            self.instance_number += 1
            stamp = now_text()
            user = self.user_named(user_name)
            record = {
                **NEW_INCIDENT,
                "sys_id": new_sys_id(),
                "number": f"INC{self.instance_number:07d}",
                "sys_created_on": stamp,
                "sys_created_by": user_name,
                "opened_at": stamp,
                "opened_by": user["sys_id"] if user else "",
            }
            journal = self._write(record, user_name, values, stamp, inserting=True)
            record["sys_mod_count"] = "0"
            self.tables["incident"][record["sys_id"]] = record
            change = Change("insert", {}, copy.deepcopy(record), journal)
            self._audit(change, user_name, stamp)
            return change

    def update_incident(self, user_name: str, sys_id: str, values: dict[str, Any]) -> Change:
        with self.lock:
            record = self.record("incident", sys_id)
            before = copy.deepcopy(record)
            candidate = copy.deepcopy(record)
            journal = self._write(candidate, user_name, values, now_text(), inserting=False)
            candidate["sys_mod_count"] = str(int(record["sys_mod_count"]) + 1)
            record.clear()
            record.update(candidate)
            change = Change("update", before, copy.deepcopy(record), journal)
            self._audit(change, user_name, record["sys_updated_on"])
            return change

    def audit(self, sys_id: str) -> list[dict[str, str]]:
        """The record's field history, oldest first (`sys_audit`: one row per field a write changed)."""
        with self.lock:
            rows = [r for r in self.tables["sys_audit"].values() if r["documentkey"] == sys_id]
        return sorted(rows, key=lambda r: int(r["_seq"]))

    def _audit(self, change: Change, user_name: str, stamp: str) -> None:
        for name in change.changed:
            row = {
                "sys_id": new_sys_id(),
                "tablename": "incident",
                "documentkey": change.after["sys_id"],
                "fieldname": name,
                "oldvalue": change.before.get(name, ""),
                "newvalue": change.after[name],
                "user": user_name,
                "record_checkpoint": change.after["sys_mod_count"],
                "sys_created_on": stamp,
                "_seq": str(self.next_number()),
            }
            self.tables["sys_audit"][row["sys_id"]] = row

    def _write(
        self, record: dict[str, str], user_name: str, values: dict[str, Any], stamp: str, *, inserting: bool
    ) -> list[dict[str, str]]:
        """Apply a request body as the platform and the out-of-box rules do; refuse what a data policy
        refuses (nothing is kept then: the caller wrote into a copy)."""
        notes: list[tuple[str, str]] = []
        for name, value in values.items():
            if name in SYSTEM_FIELDS or name not in record:
                continue  # invalid fields are ignored, as the Table API does
            text = _text(value)
            if name in JOURNAL_FIELDS:
                if text.strip():
                    notes.append((name, text))
                continue
            record[name] = text
        before_state = record.get("incident_state", "1")
        if "state" in values:
            record["incident_state"] = record["state"]
        if "impact" in values or "urgency" in values:
            # Priority is managed by Data Lookup: computed from impact and urgency.
            record["priority"] = PRIORITY_LOOKUP.get(
                (record["impact"], record["urgency"]), record["priority"]
            )
        self._lifecycle(record, user_name, stamp, before_state if not inserting else "1")
        record["sys_updated_on"] = stamp
        record["sys_updated_by"] = user_name
        journal = []
        for element, text in notes:
            entry = {
                "sys_id": new_sys_id(),
                "name": "incident",
                "element": element,
                "element_id": record["sys_id"],
                "value": text,
                "sys_created_on": stamp,
                "sys_created_by": user_name,
                "_seq": str(self.next_number()),
            }
            self.tables["sys_journal_field"][entry["sys_id"]] = entry
            journal.append({k: v for k, v in entry.items() if not k.startswith("_")})
        return journal

    def _lifecycle(self, record: dict[str, str], user_name: str, stamp: str, previous: str) -> None:
        state = record["state"]
        missing = [
            label
            for name, label in (("close_code", "Resolution code"), ("close_notes", "Resolution notes"))
            if state in ("6", "7") and not record[name].strip()
        ]
        if missing:
            raise ServiceNowError(
                403,
                "Operation Failed",
                "Data Policy Exception: The following fields are mandatory: " + ", ".join(missing),
            )
        user = self.user_named(user_name)
        user_id = user["sys_id"] if user else ""
        if state != "3":
            record["hold_reason"] = ""
        if state in ("6", "7") and previous not in ("6", "7"):
            record["resolved_at"], record["resolved_by"] = stamp, user_id
        if state == "7" and previous != "7":
            record["closed_at"], record["closed_by"] = stamp, user_id
        if state in ("1", "2", "3") and previous in ("6", "7", "8"):
            record["reopen_count"] = str(int(record["reopen_count"] or "0") + 1)
            for name in ("resolved_at", "resolved_by", "closed_at", "closed_by"):
                record[name] = ""
        record["active"] = "false" if state in ("7", "8") else "true"


def seeded_tables(username: str) -> dict[str, dict[str, dict[str, str]]]:
    """The integration user, two people, and three assignment groups."""
    users = [
        (username, "Incident Hub Integration", ""),
        ("beth.anglin", "Beth Anglin", "beth.anglin@example.com"),
        ("fred.luddy", "Fred Luddy", "fred.luddy@example.com"),
    ]
    groups = ["Service Desk", "Network", "Database"]
    sys_user = {}
    for user_name, name, email in users:
        sys_id = uuid.uuid5(uuid.NAMESPACE_DNS, f"sys_user/{user_name}").hex
        sys_user[sys_id] = {"sys_id": sys_id, "user_name": user_name, "name": name, "email": email}
    sys_user_group = {}
    for name in groups:
        sys_id = uuid.uuid5(uuid.NAMESPACE_DNS, f"sys_user_group/{name}").hex
        sys_user_group[sys_id] = {"sys_id": sys_id, "name": name}
    sys_user_group["global"] = {"sys_id": "global", "name": "global"}
    return {
        "incident": {},
        "sys_journal_field": {},
        "sys_audit": {},
        "sys_user": sys_user,
        "sys_user_group": sys_user_group,
    }


def group_id(name: str) -> str:
    """sys_id of a seeded group (Service Desk, Network, Database)."""
    return uuid.uuid5(uuid.NAMESPACE_DNS, f"sys_user_group/{name}").hex


def user_id(user_name: str) -> str:
    """sys_id of a seeded user."""
    return uuid.uuid5(uuid.NAMESPACE_DNS, f"sys_user/{user_name}").hex


def _text(value: Any) -> str:
    """What the platform stores for a JSON value: strings as given, booleans and numbers as text."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dict):
        return _text(value.get("value"))
    return str(value)
