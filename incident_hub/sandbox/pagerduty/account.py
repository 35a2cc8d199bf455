"""The PagerDuty account a sandbox starts with, and how PagerDuty renders its objects and references.

Every object has an `id` of seven upper-case letters and digits starting with "P", like PagerDuty's. `self`
links point at the sandbox's own API (so a client can follow them); `html_url` points at a made-up web
subdomain, as PagerDuty's point at `https://<subdomain>.pagerduty.com`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

HUB_USER_ID = "PHUBSVC"
HUB_EMAIL = "hub@example.com"
RESPONDER_ID = "PRESP01"
RESPONDER_EMAIL = "responder@example.com"
SECONDARY_ID = "PSECOND"
SECONDARY_EMAIL = "secondary@example.com"
SERVICE_ID = "PSVC001"
ESCALATION_POLICY_ID = "PEPOL01"
SECOND_POLICY_ID = "PEPOL02"
ROUTING_KEY = "e93facc04764012d7bfb002500d5d1a6"
PRIORITY_IDS = {f"P{level}": f"PPRIO0{level}" for level in range(1, 6)}
ABILITIES = ["teams", "read_only_users", "service_support_hours", "urgencies", "response_plays"]


def iso(moment: datetime) -> str:
    """PagerDuty's resource timestamps: UTC, whole seconds, `Z`."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def iso_ms(moment: datetime) -> str:
    """PagerDuty's webhook `occurred_at`: UTC, milliseconds, `Z`."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


@dataclass(frozen=True)
class Links:
    """Where `self` (the sandbox API) and `html_url` (the pretend web app) point."""

    api: str
    web: str

    def ref(self, kind: str, id_: str, summary: str, *, collection: str | None = None) -> dict[str, Any]:
        """A `<kind>_reference`, keyed like PagerDuty's (webhook payloads and REST responses alike)."""
        path = f"{collection or kind + 's'}/{id_}"
        return {
            "id": id_,
            "type": f"{kind}_reference",
            "summary": summary,
            "self": f"{self.api}/{path}",
            "html_url": f"{self.web}/{path}",
        }


@dataclass(frozen=True)
class User:
    id: str
    name: str
    email: str
    role: str = "user"

    def ref(self, links: Links) -> dict[str, Any]:
        return links.ref("user", self.id, self.name)

    def render(self, links: Links) -> dict[str, Any]:
        return {
            **self.ref(links),
            "type": "user",
            "name": self.name,
            "email": self.email,
            "time_zone": "Etc/UTC",
            "color": "green",
            "role": self.role,
            "avatar_url": "https://pd-static-assets.pagerduty.com/users/blank-avatar.png",
            "description": "",
            "invitation_sent": False,
            "job_title": "",
            "teams": [],
            "contact_methods": [],
            "notification_rules": [],
        }


@dataclass(frozen=True)
class EscalationPolicy:
    id: str
    name: str
    levels: tuple[tuple[str, ...], ...] = field(default_factory=tuple)
    """User ids targeted by each escalation rule, first rule first."""

    def ref(self, links: Links) -> dict[str, Any]:
        return links.ref("escalation_policy", self.id, self.name, collection="escalation_policies")

    def render(self, links: Links, account: Account) -> dict[str, Any]:
        return {
            **self.ref(links),
            "type": "escalation_policy",
            "name": self.name,
            "description": "",
            "num_loops": 0,
            "on_call_handoff_notifications": "if_has_services",
            "escalation_rules": [
                {
                    "id": f"PRULE0{level}",
                    "escalation_delay_in_minutes": 30,
                    "targets": [account.users[user_id].ref(links) for user_id in targets],
                }
                for level, targets in enumerate(self.levels, start=1)
            ],
            "services": [account.services[s].ref(links) for s in account.services],
            "teams": [],
        }


@dataclass(frozen=True)
class Service:
    id: str
    name: str
    escalation_policy_id: str
    routing_key: str
    created_at: datetime

    def ref(self, links: Links) -> dict[str, Any]:
        # PagerDuty's service html_url goes to the service directory (REST spec examples).
        reference = links.ref("service", self.id, self.name)
        reference["html_url"] = f"{links.web}/service-directory/{self.id}"
        return reference

    def render(self, links: Links, account: Account) -> dict[str, Any]:
        return {
            **self.ref(links),
            "type": "service",
            "name": self.name,
            "description": "Incidents opened by the incident hub and its monitors.",
            "auto_resolve_timeout": None,
            "acknowledgement_timeout": None,
            "created_at": iso(self.created_at),
            "status": "active",
            "alert_creation": "create_alerts_and_incidents",
            "escalation_policy": account.policies[self.escalation_policy_id].ref(links),
            "integrations": [],
            "teams": [],
            "incident_urgency_rule": {"type": "constant", "urgency": "high"},
        }


@dataclass(frozen=True)
class Priority:
    id: str
    name: str
    description: str

    def ref(self, links: Links) -> dict[str, Any]:
        reference = links.ref("priority", self.id, self.name, collection="priorities")
        # Priorities have no page of their own: their html_url is the account settings page (webhook docs).
        reference["html_url"] = f"{links.web}/account/incident_priorities"
        return reference

    def render(self, links: Links) -> dict[str, Any]:
        return {**self.ref(links), "type": "priority", "name": self.name, "description": self.description}


@dataclass
class Account:
    users: dict[str, User]
    services: dict[str, Service]
    policies: dict[str, EscalationPolicy]
    priorities: dict[str, Priority]
    """By id, highest priority (P1) first."""

    def user_by_email(self, email: str) -> User | None:
        return next((u for u in self.users.values() if u.email.lower() == email.strip().lower()), None)

    def service_by_routing_key(self, routing_key: str) -> Service | None:
        return next((s for s in self.services.values() if s.routing_key == routing_key), None)

    def priority_named(self, name: str) -> Priority | None:
        return next((p for p in self.priorities.values() if p.name == name), None)


def seeded_account(routing_key: str = ROUTING_KEY) -> Account:
    """One service on a two-level escalation policy (and a second policy to reassign to), priorities
    P1..P5, the hub's user and two people."""
    users = [
        User(HUB_USER_ID, "Incident Hub", HUB_EMAIL, role="admin"),
        User(RESPONDER_ID, "Riley Responder", RESPONDER_EMAIL),
        User(SECONDARY_ID, "Sam Secondary", SECONDARY_EMAIL),
    ]
    policy = EscalationPolicy(ESCALATION_POLICY_ID, "Default", ((RESPONDER_ID,), (SECONDARY_ID,)))
    payments = EscalationPolicy(SECOND_POLICY_ID, "Payments", ((SECONDARY_ID,), (RESPONDER_ID,)))
    service = Service(SERVICE_ID, "Checkout API", policy.id, routing_key, datetime(2024, 1, 1, tzinfo=UTC))
    descriptions = {
        "P1": "Critical issue that warrants public notification and liaison with executive teams",
        "P2": "Critical system issue actively impacting many customers' ability to use the product",
        "P3": "Stability or minor customer-impacting issues that require immediate attention",
        "P4": "Minor issues requiring action, but not affecting customer ability to use the product",
        "P5": "Cosmetic issues or bugs, not affecting customer ability to use the product",
    }
    return Account(
        users={u.id: u for u in users},
        services={service.id: service},
        policies={policy.id: policy, payments.id: payments},
        priorities={id_: Priority(id_, name, descriptions[name]) for name, id_ in PRIORITY_IDS.items()},
    )
