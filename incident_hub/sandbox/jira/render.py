"""Jira's JSON for the site's objects, in the REST v3 representation (ADF rich text, `/rest/api/3/` links)
answered by the API, or the REST v2 one (plain-text rich text, `/rest/api/2/` links) that webhooks carry."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from zoneinfo import ZoneInfo

from incident_hub.sandbox.jira.model import (
    STATUS_CATEGORIES,
    ChangeItem,
    Comment,
    Document,
    History,
    Issue,
    IssueType,
    JiraState,
    Priority,
    Project,
    Resolution,
    Status,
    Transition,
    User,
    jira_time,
)

# Everything `GET /rest/api/3/issue/{key}` can expand; Jira lists them in each issue's `expand`.
ISSUE_EXPANDS = "renderedFields,names,schema,operations,editmeta,changelog,versionedRepresentations"


@dataclass(frozen=True)
class View:
    """Who looks and how: the site's base URL, the REST version ("3" for the API, "2" for webhooks)
    and the time zone timestamps are rendered in (the viewer's profile time zone)."""

    base: str
    api: str
    zone: ZoneInfo

    def rest(self, path: str) -> str:
        return f"{self.base}/rest/api/{self.api}/{path}"


def adf_document(text: str) -> Document:
    """Plain text as ADF: blank-line separated paragraphs, single newlines as hard breaks."""
    paragraphs: list[dict[str, Any]] = []
    for paragraph in text.split("\n\n") if text else []:
        content: list[dict[str, Any]] = []
        for number, line in enumerate(paragraph.split("\n")):
            if number:
                content.append({"type": "hardBreak"})
            if line:
                content.append({"type": "text", "text": line})
        paragraphs.append({"type": "paragraph", "content": content})
    return {"type": "doc", "version": 1, "content": paragraphs}


def is_adf(value: Any) -> bool:
    return (
        isinstance(value, dict)
        and value.get("type") == "doc"
        and value.get("version") == 1
        and isinstance(value.get("content"), list)
    )


def adf_text(document: Document) -> str:
    """ADF as the plain text REST v2 shows. Jira renders wiki markup there; marks are dropped here."""

    def inline(node: dict[str, Any]) -> str:
        if node.get("type") == "text":
            return str(node.get("text", ""))
        if node.get("type") == "hardBreak":
            return "\n"
        if node.get("type") == "mention":
            return str(node.get("attrs", {}).get("text", ""))
        return "".join(inline(child) for child in node.get("content", []))

    blocks = [inline(block) for block in document.get("content", [])]
    return "\n\n".join(blocks)


def user_json(user: User, view: View, *, email: bool = True) -> dict[str, Any]:
    initials = "".join(part[0] for part in user.display_name.split()[:2]).upper()
    avatar = "https://avatar-management--avatars.us-west-2.prod.public.atl-paas.net/initials"
    found: dict[str, Any] = {
        "self": view.rest(f"user?accountId={user.account_id}"),
        "accountId": user.account_id,
        "avatarUrls": {f"{n}x{n}": f"{avatar}/{initials}-5.png?size={n}&s={n}" for n in (48, 24, 16, 32)},
        "displayName": user.display_name,
        "active": True,
        "timeZone": user.time_zone,
        "accountType": "atlassian",
    }
    if email:
        found["emailAddress"] = user.email
    return found


def status_json(status: Status, view: View) -> dict[str, Any]:
    category_id, category_name, colour = STATUS_CATEGORIES[status.category]
    return {
        "self": view.rest(f"status/{status.id}"),
        "description": "",
        "iconUrl": f"{view.base}/",
        "name": status.name,
        "id": status.id,
        "statusCategory": {
            "self": view.rest(f"statuscategory/{category_id}"),
            "id": category_id,
            "key": status.category,
            "colorName": colour,
            "name": category_name,
        },
    }


def priority_json(priority: Priority, view: View, *, full: bool = False) -> dict[str, Any]:
    found: dict[str, Any] = {
        "self": view.rest(f"priority/{priority.id}"),
        "iconUrl": f"{view.base}/images/icons/priorities/{priority.name.lower()}.svg",
        "name": priority.name,
        "id": priority.id,
    }
    if full:
        found |= {"statusColor": priority.color, "description": priority.name, "isDefault": False}
    return found


def issue_type_json(issue_type: IssueType, view: View) -> dict[str, Any]:
    return {
        "self": view.rest(f"issuetype/{issue_type.id}"),
        "id": issue_type.id,
        "description": issue_type.description,
        "iconUrl": f"{view.base}/rest/api/2/universal_avatar/view/type/issuetype/avatar/10303?size=medium",
        "name": issue_type.name,
        "subtask": False,
        "avatarId": 10303,
    }


def project_json(project: Project, view: View) -> dict[str, Any]:
    return {
        "self": view.rest(f"project/{project.id}"),
        "id": project.id,
        "key": project.key,
        "name": project.name,
        "projectTypeKey": "software",
        "simplified": False,
        "avatarUrls": {
            f"{n}x{n}": f"{view.base}/rest/api/2/universal_avatar/view/type/project/avatar/10400?size={n}"
            for n in (48, 24, 16, 32)
        },
    }


def project_details_json(project: Project, state: JiraState, view: View) -> dict[str, Any]:
    """`GET /project/{key}`."""
    return project_json(project, view) | {
        "expand": "description,lead,issueTypes,url,projectKeys,permissions,insight",
        "description": "",
        "lead": user_json(state.users[project.lead], view),
        "issueTypes": [issue_type_json(t, view) | {"hierarchyLevel": 0} for t in project.issue_types],
        "assigneeType": "UNASSIGNED",
        "components": [],
        "versions": [],
        "roles": {},
        "style": "classic",
        "isPrivate": False,
        "properties": {},
    }


# System fields the seeded screens show: id -> (name, schema type, array item type).
_SYSTEM_FIELDS = {
    "summary": ("Summary", "string", None),
    "description": ("Description", "string", None),
    "issuetype": ("Issue Type", "issuetype", None),
    "project": ("Project", "project", None),
    "status": ("Status", "status", None),
    "priority": ("Priority", "priority", None),
    "labels": ("Labels", "array", "string"),
    "assignee": ("Assignee", "user", None),
    "reporter": ("Reporter", "user", None),
    "creator": ("Creator", "user", None),
    "created": ("Created", "datetime", None),
    "updated": ("Updated", "datetime", None),
    "resolution": ("Resolution", "resolution", None),
    "resolutiondate": ("Resolved", "datetime", None),
    "statuscategorychangedate": ("Status Category Changed", "datetime", None),
    "comment": ("Comment", "comments-page", None),
}


def fields_json(state: JiraState) -> list[dict[str, Any]]:
    """`GET /field`; jira-python reads it to turn JQL clause names into field ids before searching."""
    found: list[dict[str, Any]] = []
    for field_id, (name, kind, items) in _SYSTEM_FIELDS.items():
        schema: dict[str, Any] = {"type": kind, "system": field_id} | ({"items": items} if items else {})
        found.append(_field_json(field_id, name, False, [field_id], schema))
    for custom in state.custom_fields.values():
        number = int(custom.id.removeprefix("customfield_"))
        plugin = "select" if custom.options else "textfield"
        schema = {
            "type": "option" if custom.options else "string",
            "custom": f"com.atlassian.jira.plugin.system.customfieldtypes:{plugin}",
            "customId": number,
        }
        found.append(_field_json(custom.id, custom.name, True, [f"cf[{number}]", custom.name], schema))
    return found


def _field_json(
    field_id: str, name: str, custom: bool, clauses: list[str], schema: dict[str, Any]
) -> dict[str, Any]:
    return {
        "id": field_id,
        "key": field_id,
        "name": name,
        "custom": custom,
        "orderable": True,
        "navigable": True,
        "searchable": True,
        "clauseNames": clauses,
        "schema": schema,
    }


def resolution_json(resolution: Resolution, view: View) -> dict[str, Any]:
    return {
        "self": view.rest(f"resolution/{resolution.id}"),
        "id": resolution.id,
        "description": resolution.description,
        "name": resolution.name,
    }


def transition_json(transition: Transition, state: JiraState, view: View) -> dict[str, Any]:
    return {
        "id": transition.id,
        "name": transition.name,
        "to": status_json(state.statuses[transition.to], view),
        "hasScreen": False,
        "isGlobal": not transition.sources,
        "isInitial": False,
        "isAvailable": True,
        "isConditional": False,
        "isLooped": False,
    }


def rich_text(document: Document | None, view: View) -> Any:
    if document is None:
        return None
    return document if view.api == "3" else adf_text(document)


def comment_json(comment: Comment, view: View) -> dict[str, Any]:
    return {
        "self": view.rest(f"issue/{comment.issue_id}/comment/{comment.id}"),
        "id": comment.id,
        # Cloud webhook comments carry no e-mail addresses (webhook-cloud-comment-*.json).
        "author": user_json(comment.author, view, email=False),
        "body": rich_text(comment.body, view),
        "updateAuthor": user_json(comment.update_author, view, email=False),
        "created": jira_time(comment.created, view.zone),
        "updated": jira_time(comment.updated, view.zone),
        "jsdPublic": True,
    }


def custom_value(value: Any, view: View) -> Any:
    if isinstance(value, tuple):
        option_id, text = value
        return {"self": view.rest(f"customFieldOption/{option_id}"), "value": text, "id": option_id}
    return value


def issue_fields(issue: Issue, state: JiraState, view: View) -> dict[str, Any]:
    """Every field of the issue (`*all`); the comment field only in the API representation."""
    fields: dict[str, Any] = {
        "issuetype": issue_type_json(issue.issue_type, view),
        "project": project_json(issue.project, view),
        "resolution": resolution_json(issue.resolution, view) if issue.resolution else None,
        "resolutiondate": jira_time(issue.resolution_date, view.zone) if issue.resolution_date else None,
        "created": jira_time(issue.created, view.zone),
        "priority": priority_json(issue.priority, view),
        "labels": list(issue.labels),
        "assignee": user_json(issue.assignee, view) if issue.assignee else None,
        "updated": jira_time(issue.updated, view.zone),
        "status": status_json(issue.status, view),
        "statuscategorychangedate": jira_time(issue.status_changed, view.zone),
        "description": rich_text(issue.description, view),
        "summary": issue.summary,
        "creator": user_json(issue.creator, view),
        "reporter": user_json(issue.reporter, view),
    }
    for field_id in state.custom_fields:
        fields[field_id] = custom_value(issue.custom.get(field_id), view)
    if view.api == "3":
        fields["comment"] = {
            "comments": [comment_json(c, view) for c in issue.comments],
            "self": view.rest(f"issue/{issue.id}/comment"),
            "maxResults": len(issue.comments),
            "total": len(issue.comments),
            "startAt": 0,
        }
    return fields


def change_item_json(item: ChangeItem, *, webhook: bool) -> dict[str, Any]:
    found: dict[str, Any] = {
        "field": item.field,
        "fieldtype": item.fieldtype,
        "fieldId": item.field_id,
        "from": item.from_,
        "fromString": item.from_string,
        "to": item.to,
        "toString": item.to_string,
    }
    if webhook and item.is_user:
        found |= {"tmpFromAccountId": item.from_, "tmpToAccountId": item.to}
    return found


def history_json(history: History, view: View) -> dict[str, Any]:
    return {
        "id": history.id,
        "author": user_json(history.author, view),
        "created": jira_time(history.created, view.zone),
        "items": [change_item_json(item, webhook=False) for item in history.items],
    }


def issue_json(
    issue: Issue,
    state: JiraState,
    view: View,
    *,
    fields: list[str] | None = None,
    expand: str = "",
    properties: list[str] | None = None,
) -> dict[str, Any]:
    """`GET /issue/{key}`: `fields` as Jira takes them (`*all`, `*navigable`, names, `-name`)."""
    every = issue_fields(issue, state, view)
    wanted = [f for name in fields or ["*all"] for f in name.split(",") if f]
    chosen = {k: v for k, v in every.items() if "*all" in wanted or "*navigable" in wanted or k in wanted}
    chosen = {k: v for k, v in chosen.items() if f"-{k}" not in wanted}
    found: dict[str, Any] = {
        "expand": ISSUE_EXPANDS,
        "id": issue.id,
        "self": view.rest(f"issue/{issue.id}"),
        "key": issue.key,
        "fields": chosen,
    }
    expansions = {e.strip() for e in expand.split(",")}
    if "changelog" in expansions:
        found["changelog"] = {
            "startAt": 0,
            "maxResults": len(issue.histories),
            "total": len(issue.histories),
            "histories": [history_json(h, view) for h in issue.histories],
        }
    if "transitions" in expansions:
        found["transitions"] = [
            transition_json(t, state, view) for t in state.transitions if t.available_from(issue.status.id)
        ]
    if properties:
        keys = {k for name in properties for k in name.split(",")}
        found["properties"] = {k: v for k, v in issue.properties.items() if k in keys or "*all" in keys}
    return found
