"""What people and the API do to issues: create, edit, transition, comment. Each action validates the way
Jira does (all-or-nothing, field errors keyed by field id), records a changelog and returns the events
Jira would send webhooks for. Callers hold `state.lock`."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from incident_hub.sandbox.jira.model import (
    ChangeItem,
    Comment,
    Document,
    History,
    Issue,
    IssueType,
    JiraError,
    JiraState,
    Project,
    Transition,
    User,
)
from incident_hub.sandbox.jira.render import adf_text, is_adf


@dataclass(frozen=True)
class IssueEvent:
    webhook_event: str
    """`jira:issue_created` or `jira:issue_updated`."""
    type_name: str
    """`issue_event_type_name`: `issue_created`, `issue_updated`, `issue_generic`, `issue_assigned`."""
    issue: Issue
    actor: User
    history: History


@dataclass(frozen=True)
class CommentEvent:
    webhook_event: str
    """`comment_created` or `comment_updated`."""
    issue: Issue
    comment: Comment


Event = IssueEvent | CommentEvent

_NOT_SETTABLE = "Field '{}' cannot be set. It is not on the appropriate screen, or unknown."
# REST v3 takes rich text only as ADF; this is the error it gives for anything else.
_NOT_ADF = "Operation value must be an Atlassian Document (see the Atlassian Document Format)"


def create_issue(
    state: JiraState, fields: dict[str, Any], actor: User, update: dict[str, Any] | None = None
) -> tuple[Issue, list[Event]]:
    project = _project(state, fields.get("project"))
    issue_type = _issue_type(project, fields.get("issuetype"))
    errors: dict[str, str] = {}
    given = {k: v for k, v in fields.items() if k not in ("project", "issuetype", "reporter")}
    parsed, comments = _parse(state, given, update or {}, errors)
    reporter = _user(state, fields["reporter"], "reporter", errors) if "reporter" in fields else actor
    if not str(parsed.get("summary") or "").strip():
        errors["summary"] = "You must specify a summary of the issue."
    for field_id, message in project.required.items():
        if parsed.get(field_id) in (None, ""):
            errors.setdefault(field_id, message)
    if errors:
        raise JiraError(400, [], errors)
    now = state.now()
    issue = Issue(
        id=str(next(state.issue_ids)),
        key=f"{project.key}-{next(project.issue_numbers)}",
        project=project,
        issue_type=issue_type,
        summary="",
        status=state.statuses[state.initial_status],
        priority=state.priorities[state.default_priority],
        reporter=reporter or actor,
        creator=actor,
        created=now,
        updated=now,
        status_changed=now,
    )
    changed = {item.field_id: item for item in _apply(state, issue, parsed)}
    # A created issue's changelog names what was set, plus status and reporter; never labels
    # (webhook-issue-created*.json, webhook-cloud-issue-created-many-fields.json).
    changed.pop("labels", None)
    changed.setdefault("description", ChangeItem("description", "jira", "description", None, None, None, ""))
    changed["priority"] = ChangeItem(
        "priority", "jira", "priority", None, None, issue.priority.id, issue.priority.name
    )
    changed["reporter"] = _user_item("reporter", None, issue.reporter)
    changed["status"] = ChangeItem("Status", "jira", "status", None, None, issue.status.id, issue.status.name)
    history = _record(state, issue, actor, list(changed.values()), now)
    state.issues[issue.id] = issue
    events: list[Event] = [IssueEvent("jira:issue_created", "issue_created", issue, actor, history)]
    for body in comments:
        events.extend(add_comment(state, issue, body, actor)[1])
    return issue, events


def edit_issue(
    state: JiraState, issue: Issue, fields: dict[str, Any], update: dict[str, Any], actor: User
) -> list[Event]:
    errors: dict[str, str] = {}
    parsed, comments = _parse(state, fields, update, errors, issue)
    if errors:
        raise JiraError(400, [], errors)
    events: list[Event] = []
    items = _apply(state, issue, parsed)
    if items:
        now = state.now()
        issue.updated = now
        history = _record(state, issue, actor, items, now)
        events.append(IssueEvent("jira:issue_updated", _type_name(items), issue, actor, history))
    for body in comments:
        events.extend(add_comment(state, issue, body, actor)[1])
    return events


def available_transitions(state: JiraState, issue: Issue) -> list[Transition]:
    return [t for t in state.transitions if t.available_from(issue.status.id)]


def transition_issue(
    state: JiraState,
    issue: Issue,
    transition_id: Any,
    fields: dict[str, Any],
    update: dict[str, Any],
    actor: User,
) -> list[Event]:
    if transition_id is None:
        raise JiraError(400, ["Missing 'transition' identifier"])
    transition = next((t for t in available_transitions(state, issue) if t.id == str(transition_id)), None)
    if transition is None:
        raise JiraError(400, [f"Transition id '{transition_id}' is not valid for this issue."])
    # The seeded workflow has no transition screens, so only a comment may ride along.
    errors = {name: _NOT_SETTABLE.format(name) for name in fields}
    errors |= {name: _NOT_SETTABLE.format(name) for name in update if name != "comment"}
    if errors:
        raise JiraError(400, [], errors)
    _, comments = _parse(state, {}, {"comment": update["comment"]} if "comment" in update else {}, errors)
    if errors:
        raise JiraError(400, [], errors)
    now = state.now()
    old, new = issue.status, state.statuses[transition.to]
    items = [ChangeItem("status", "jira", "status", old.id, old.name, new.id, new.name)]
    old_resolution = issue.resolution
    if new.category == "done" and old.category != "done":
        issue.resolution = state.resolutions[transition.resolution or "10000"]
        issue.resolution_date = now
    elif new.category != "done":
        issue.resolution, issue.resolution_date = None, None
    if issue.resolution != old_resolution:
        before, after = old_resolution, issue.resolution
        items.append(
            ChangeItem(
                "resolution",
                "jira",
                "resolution",
                before.id if before else None,
                before.name if before else None,
                after.id if after else None,
                after.name if after else None,
            )
        )
    if new.category != old.category:
        issue.status_changed = now
    issue.status, issue.updated = new, now
    history = _record(state, issue, actor, items, now)
    events: list[Event] = [IssueEvent("jira:issue_updated", "issue_generic", issue, actor, history)]
    for body in comments:
        events.extend(add_comment(state, issue, body, actor)[1])
    return events


def add_comment(state: JiraState, issue: Issue, body: Any, actor: User) -> tuple[Comment, list[Event]]:
    now = state.now()
    comment = Comment(str(next(state.comment_ids)), issue.id, actor, _comment_body(body), now, now, actor)
    issue.comments.append(comment)
    issue.updated = now
    return comment, [CommentEvent("comment_created", issue, comment)]


def edit_comment(
    state: JiraState, issue: Issue, comment_id: str, body: Any, actor: User
) -> tuple[Comment, list[Event]]:
    comment = next((c for c in issue.comments if c.id == comment_id), None)
    if comment is None:
        raise JiraError(404, [f"Can not find a comment for the id: {comment_id}."])
    comment.body, comment.updated, comment.update_author = _comment_body(body), state.now(), actor
    return comment, [CommentEvent("comment_updated", issue, comment)]


def _comment_body(body: Any) -> Document:
    if not is_adf(body):
        raise JiraError(400, [], {"comment": "Comment body is not valid!"})
    if not adf_text(body).strip():
        raise JiraError(400, [], {"comment": "Comment body can not be empty!"})
    document: Document = body
    return document


def _project(state: JiraState, wanted: Any) -> Project:
    project = None
    if isinstance(wanted, dict):
        project = state.find_project(str(wanted.get("key") or wanted.get("id") or ""))
    if project is None:
        raise JiraError(400, [], {"project": "Specify a valid project ID or key"})
    return project


def _issue_type(project: Project, wanted: Any) -> IssueType:
    if not isinstance(wanted, dict) or not (wanted.get("id") or wanted.get("name")):
        raise JiraError(400, [], {"issuetype": "Specify an issue type"})
    for issue_type in project.issue_types:
        if wanted.get("id") == issue_type.id or wanted.get("name") == issue_type.name:
            return issue_type
    raise JiraError(400, [], {"issuetype": "Specify a valid issue type"})


def _user(state: JiraState, wanted: Any, name: str, errors: dict[str, str]) -> User | None:
    if wanted is None:
        return None
    account_id = (wanted.get("accountId") or wanted.get("id")) if isinstance(wanted, dict) else None
    if account_id in state.users:
        return state.users[account_id]
    errors[name] = f"Specify a valid value for {name}"
    return None


def _parse(
    state: JiraState,
    fields: dict[str, Any],
    update: dict[str, Any],
    errors: dict[str, str],
    issue: Issue | None = None,
) -> tuple[dict[str, Any], list[Any]]:
    """REST `fields` and `update` operations as typed new values, and comment bodies to add."""
    parsed: dict[str, Any] = {}
    comments: list[Any] = []
    for name, value in fields.items():
        _parse_value(state, name, value, parsed, errors)
    for name, operations in update.items():
        for operation in operations if isinstance(operations, list) else [operations]:
            for verb, value in (operation or {}).items():
                if name == "comment" and verb == "add":
                    comments.append(value.get("body") if isinstance(value, dict) else value)
                elif verb == "set":
                    _parse_value(state, name, value, parsed, errors)
                elif name == "labels" and verb in ("add", "remove"):
                    labels = list(parsed.get("labels", issue.labels if issue else []))
                    if verb == "add" and value not in labels:
                        labels.append(value)
                    parsed["labels"] = [label for label in labels if verb == "add" or label != value]
                else:
                    errors[name] = _NOT_SETTABLE.format(name)
    return parsed, comments


def _parse_value(
    state: JiraState, name: str, value: Any, parsed: dict[str, Any], errors: dict[str, str]
) -> None:
    custom = state.custom_fields.get(name)
    if name == "summary":
        if not isinstance(value, str):
            errors[name] = "Specify a valid value for summary"
        elif "\n" in value or "\r" in value:
            errors[name] = "The summary is invalid because it contains newline characters."
        elif len(value) > 255:
            errors[name] = "Summary must be less than 255 characters."
        parsed[name] = value
    elif name == "description":
        if value is not None and not is_adf(value):
            errors[name] = _NOT_ADF
        parsed[name] = value
    elif name == "priority":
        wanted = value if isinstance(value, dict) else {}
        found = next(
            (
                p
                for p in state.priorities.values()
                if wanted.get("id") == p.id or wanted.get("name") == p.name
            ),
            None,
        )
        if found is None:
            errors[name] = "Specify a valid priority"
        parsed[name] = found
    elif name == "labels":
        if not isinstance(value, list) or not all(isinstance(label, str) for label in value):
            errors[name] = "Specify a valid value for labels"
        elif spaced := [label for label in value if " " in label]:
            errors[name] = f"The label '{spaced[0]}' contains spaces which is invalid."
        parsed[name] = value
    elif name == "assignee":
        parsed[name] = _user(state, value, name, errors)
    elif custom is not None and custom.options:
        option = custom.option(value)
        if value is not None and option is None:
            named = value.get("value", value.get("id")) if isinstance(value, dict) else value
            errors[name] = f"Option value '{named}' is not valid"
        parsed[name] = option
    elif custom is not None:
        if value is not None and not isinstance(value, str):
            errors[name] = f"Operation value must be a string for {custom.name}"
        parsed[name] = value
    else:
        errors[name] = _NOT_SETTABLE.format(name)


def _apply(state: JiraState, issue: Issue, parsed: dict[str, Any]) -> list[ChangeItem]:
    """Sets the parsed values; the changelog items for those that differ."""
    items: list[ChangeItem] = []
    for name, new in parsed.items():
        custom = state.custom_fields.get(name)
        old: Any = issue.custom.get(name) if custom else getattr(issue, name)
        if new == old:
            continue
        if custom:
            issue.custom[name] = new
            if custom.options:
                before, after = old or (None, None), new or (None, None)
                items.append(
                    ChangeItem(custom.name, "custom", name, before[0], before[1], after[0], after[1])
                )
            else:
                items.append(ChangeItem(custom.name, "custom", name, None, old, None, new))
            continue
        setattr(issue, name, list(new) if name == "labels" else new)
        if name == "summary":
            items.append(ChangeItem(name, "jira", name, None, old or None, None, new))
        elif name == "description":
            before_text = adf_text(old) if old else None
            after_text = adf_text(new) if new else None
            items.append(ChangeItem(name, "jira", name, None, before_text, None, after_text))
        elif name == "priority":
            items.append(ChangeItem(name, "jira", name, old.id, old.name, new.id, new.name))
        elif name == "labels":
            items.append(ChangeItem(name, "jira", name, None, " ".join(old), None, " ".join(new)))
        elif name == "assignee":
            items.append(_user_item(name, old, new))
    return items


def _user_item(name: str, old: User | None, new: User | None) -> ChangeItem:
    return ChangeItem(
        name,
        "jira",
        name,
        old.account_id if old else None,
        old.display_name if old else None,
        new.account_id if new else None,
        new.display_name if new else None,
        is_user=True,
    )


def _type_name(items: list[ChangeItem]) -> str:
    if all(item.field_id == "assignee" for item in items):
        return "issue_assigned"
    return "issue_updated"


def _record(state: JiraState, issue: Issue, actor: User, items: list[ChangeItem], now: datetime) -> History:
    # Jira lists a change's items ordered by field id (webhook-cloud-issue-created-many-fields.json).
    ordered = tuple(sorted(items, key=lambda item: item.field_id))
    history = History(str(next(state.history_ids)), actor, now, ordered)
    issue.histories.append(history)
    return history
