"""Jira Cloud admin webhooks: bodies in the REST v2 representation (shaped like the deliveries in
`vendor/jira/webhook-examples/`) and the `X-Hub-Signature` header."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from incident_hub.sandbox.jira.issues import CommentEvent, Event
from incident_hub.sandbox.jira.model import JiraState
from incident_hub.sandbox.jira.render import (
    View,
    change_item_json,
    comment_json,
    issue_fields,
    issue_type_json,
    priority_json,
    project_json,
    status_json,
    user_json,
)
from incident_hub.signing import sign_sha256

IDENTIFIER_HEADER = "X-Atlassian-Webhook-Identifier"


def sign(raw: bytes, secret: str) -> dict[str, str]:
    """Atlassian's "Secure admin webhooks": WebSub `method=signature`, HMAC-SHA256 of the raw body."""
    return {"X-Hub-Signature": f"sha256={sign_sha256(secret, raw)}"}


def delivery_headers() -> dict[str, str]:
    """Unique per webhook and kept across redeliveries, so receivers can drop duplicates."""
    return {IDENTIFIER_HEADER: str(uuid.uuid4())}


def webhook_body(event: Event, state: JiraState, base: str) -> dict[str, Any]:
    """Render now, under `state.lock`: the issue keeps changing after the event."""
    if isinstance(event, CommentEvent):
        view = View(base, "2", event.comment.update_author.zone)
        issue = event.issue
        return {
            "timestamp": _millis(event.comment.updated),
            "webhookEvent": event.webhook_event,
            "comment": comment_json(event.comment, view),
            # Comment events carry a reduced issue (webhook-cloud-comment-created.json).
            "issue": {
                "id": issue.id,
                "self": view.rest(f"issue/{issue.id}"),
                "key": issue.key,
                "fields": {
                    "summary": issue.summary,
                    "issuetype": issue_type_json(issue.issue_type, view),
                    "project": project_json(issue.project, view),
                    "assignee": user_json(issue.assignee, view) if issue.assignee else None,
                    "priority": priority_json(issue.priority, view),
                    "status": status_json(issue.status, view),
                },
            },
        }
    view = View(base, "2", event.actor.zone)
    return {
        "timestamp": _millis(event.history.created),
        "webhookEvent": event.webhook_event,
        "issue_event_type_name": event.type_name,
        "user": user_json(event.actor, view),
        "issue": {
            "id": event.issue.id,
            "self": view.rest(f"issue/{event.issue.id}"),
            "key": event.issue.key,
            "fields": issue_fields(event.issue, state, view),
        },
        "changelog": {
            "id": event.history.id,
            "items": [change_item_json(item, webhook=True) for item in event.history.items],
        },
    }


def _millis(moment: datetime) -> int:
    return int(moment.timestamp() * 1000)
