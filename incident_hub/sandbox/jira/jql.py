"""The slice of JQL a connector needs: clauses joined by AND, `ORDER BY`.

Fields: `project`, `key`, `status`, `statusCategory`, `labels`, `created`, `updated` (dates in the searching
user's time zone, like Jira: "yyyy/MM/dd HH:mm", "yyyy-MM-dd HH:mm", dates alone, or "-5m"/"-2h"/"-1d"/"-1w"),
and indexed entity properties `issue.property[key].path`. Anything else is a 400 in Jira's error shape.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from incident_hub.sandbox.jira.model import STATUS_CATEGORIES, Issue, JiraError, JiraState, User

_TOKEN = re.compile(
    r"""\s*(?:(?P<string>"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*')|(?P<op>!=|>=|<=|=|>|<|!~|~)"""
    r"""|(?P<punct>[(),])|(?P<word>[^\s"'(),=!<>~]+))"""
)
_PROPERTY = re.compile(r"issue\.property\[(?P<key>[^\]]+)\]\.(?P<path>[\w.]+)", re.IGNORECASE)
_DATE_FORMATS = ("%Y/%m/%d %H:%M", "%Y-%m-%d %H:%M", "%Y/%m/%d", "%Y-%m-%d")
_PERIOD = re.compile(r"(?P<sign>[-+]?)(?P<amount>\d+)(?P<unit>[wdhm])")
_PERIOD_UNITS = {
    "w": timedelta(weeks=1),
    "d": timedelta(days=1),
    "h": timedelta(hours=1),
    "m": timedelta(minutes=1),
}
_EQUALITY = ("=", "!=", "in")
_COMPARISON = ("=", "!=", ">", ">=", "<", "<=")
_UNBOUNDED = "Unbounded JQL queries are not allowed here. Please add a search restriction to your query."


def _invalid(message: str) -> JiraError:
    return JiraError(400, [message])


@dataclass(frozen=True)
class Clause:
    field: str
    operator: str
    values: tuple[Any, ...]
    read: Callable[[Issue], Any]

    def matches(self, issue: Issue) -> bool:
        found = self.read(issue)
        if self.field == "labels":
            hit = any(value in found for value in self.values)
            return hit if self.operator in ("=", "in") else not hit
        if self.operator in ("=", "in"):
            return found in self.values
        if self.operator == "!=":
            return found is not None and found not in self.values
        if found is None:
            return False
        limit = self.values[0]
        return bool(
            {">": found > limit, ">=": found >= limit, "<": found < limit, "<=": found <= limit}[
                self.operator
            ]
        )


@dataclass(frozen=True)
class Query:
    clauses: tuple[Clause, ...]
    order: tuple[tuple[str, bool], ...]
    """(field, descending); Jira's default when absent is newest first."""

    def matches(self, issue: Issue) -> bool:
        return all(clause.matches(issue) for clause in self.clauses)

    def sort(self, issues: list[Issue]) -> list[Issue]:
        ordered = sorted(issues, key=lambda issue: int(issue.id), reverse=True)
        for field, descending in reversed(self.order):
            ordered.sort(key=_SORT_KEYS[field], reverse=descending)
        return ordered


_SORT_KEYS: dict[str, Callable[[Issue], Any]] = {
    "updated": lambda issue: issue.updated,
    "created": lambda issue: issue.created,
    "key": lambda issue: (issue.project.key, int(issue.key.rsplit("-", 1)[1])),
    "id": lambda issue: int(issue.id),
    "priority": lambda issue: int(issue.priority.id),
}


def parse(text: str, state: JiraState, user: User) -> Query:
    tokens = [(m.lastgroup or "", m.group(m.lastgroup or 0)) for m in _TOKEN.finditer(text) if m.lastgroup]
    if "".join(t for _, t in tokens).replace(" ", "") != re.sub(r"\s+", "", text):
        raise _invalid(f"Error in the JQL Query: The character in '{text}' is a reserved JQL character.")
    position = 0

    def peek() -> str:
        return tokens[position][1] if position < len(tokens) else ""

    def take() -> tuple[str, str]:
        nonlocal position
        if position >= len(tokens):
            raise _invalid("Error in the JQL Query: Expecting more of the query, but the query ended.")
        position += 1
        return tokens[position - 1]

    clauses: list[Clause] = []
    order: list[tuple[str, bool]] = []
    while position < len(tokens) and peek().lower() != "order":
        if clauses:
            joiner = take()[1]
            if joiner.lower() != "and":
                raise _invalid(
                    f"Error in the JQL Query: the Jira sandbox joins clauses with AND only, got '{joiner}'."
                )
        field = take()[1]
        kind, operator = take()
        if kind == "word" and operator.lower() == "in":
            values = _list(take)
            operator = "in"
        elif kind == "op":
            values = [_literal(take())]
        else:
            raise _invalid(f"Error in the JQL Query: Expecting operator but got '{operator}'.")
        clauses.append(_clause(field, operator, values, state, user))
    if position < len(tokens):
        take()
        if take()[1].lower() != "by":
            raise _invalid("Error in the JQL Query: Expecting 'by' after 'order'.")
        while True:
            field = take()[1].lower()
            if field not in _SORT_KEYS:
                raise _invalid(f"Field '{field}' does not support sorting.")
            descending = False
            if peek().lower() in ("asc", "desc"):
                descending = take()[1].lower() == "desc"
            order.append((field, descending))
            if peek() != ",":
                break
            take()
        if position < len(tokens):
            raise _invalid(f"Error in the JQL Query: Expecting ',' or the end of the query, got '{peek()}'.")
    if not clauses:
        raise _invalid(_UNBOUNDED)
    return Query(tuple(clauses), tuple(order))


def _literal(token: tuple[str, str]) -> str:
    kind, text = token
    if kind == "string":
        return re.sub(r"\\(.)", r"\1", text[1:-1])
    if kind != "word":
        raise _invalid(f"Error in the JQL Query: Expecting a value but got '{text}'.")
    return text


def _list(take: Callable[[], tuple[str, str]]) -> list[str]:
    if take()[1] != "(":
        raise _invalid("Error in the JQL Query: Expecting '(' after 'in'.")
    values = [_literal(take())]
    while (separator := take()[1]) == ",":
        values.append(_literal(take()))
    if separator != ")":
        raise _invalid(f"Error in the JQL Query: Expecting ')' but got '{separator}'.")
    return values


def _clause(field: str, operator: str, values: list[str], state: JiraState, user: User) -> Clause:
    name = field.lower()
    allowed = _COMPARISON if name in ("created", "updated", "createddate", "updateddate") else _EQUALITY
    if operator not in allowed:
        raise _invalid(f"The operator '{operator}' is not supported by the '{field}' field.")
    if name == "project":
        keys = []
        for value in values:
            project = next(
                (p for p in state.projects.values() if value.upper() == p.key or value in (p.id, p.name)),
                None,
            )
            if project is None:
                raise _invalid(f"The value '{value}' does not exist for the field 'project'.")
            keys.append(project.key)
        return Clause(name, operator, tuple(keys), lambda issue: issue.project.key)
    if name in ("key", "issuekey", "id"):
        return Clause(name, operator, tuple(v.upper() for v in values), lambda issue: issue.key)
    if name == "status":
        ids = []
        for value in values:
            status = next((s for s in state.statuses.values() if s.name.lower() == value.lower()), None)
            if status is None:
                raise _invalid(f"The value '{value}' does not exist for the field 'status'.")
            ids.append(status.id)
        return Clause(name, operator, tuple(ids), lambda issue: issue.status.id)
    if name == "statuscategory":
        names = {category[1].lower(): key for key, category in STATUS_CATEGORIES.items()}
        wanted = tuple(names.get(v.lower(), v.lower()) for v in values)
        if unknown := [v for v in wanted if v not in STATUS_CATEGORIES]:
            raise _invalid(f"The value '{unknown[0]}' does not exist for the field 'statusCategory'.")
        return Clause(name, operator, wanted, lambda issue: issue.status.category)
    if name == "labels":
        return Clause(name, operator, tuple(values), lambda issue: issue.labels)
    if name in ("created", "updated", "createddate", "updateddate"):
        attribute = "created" if name.startswith("created") else "updated"
        moment = _date(values[0], field, state, user)
        return Clause(attribute, operator, (moment,), lambda issue: getattr(issue, attribute))
    if match := _PROPERTY.fullmatch(field):
        key, path = match.group("key"), match.group("path").split(".")
        if key not in state.indexed_properties:
            raise _invalid(f"Field '{field}' does not exist or you do not have permission to view it.")
        return Clause(field, operator, tuple(values), lambda issue: _property(issue, key, path))
    raise _invalid(f"Field '{field}' does not exist or you do not have permission to view it.")


def _date(value: str, field: str, state: JiraState, user: User) -> datetime:
    """JQL dates are wall-clock times in the searching user's profile time zone."""
    for pattern in _DATE_FORMATS:
        try:
            return datetime.strptime(value, pattern).replace(tzinfo=user.zone)
        except ValueError:
            continue
    if period := _PERIOD.fullmatch(value.replace(" ", "")):
        step = _PERIOD_UNITS[period.group("unit")] * int(period.group("amount"))
        return state.now() - step if period.group("sign") == "-" else state.now() + step
    raise _invalid(
        f"Date value '{value}' for field '{field}' is invalid. Valid formats include: 'yyyy/MM/dd HH:mm', "
        "'yyyy-MM-dd HH:mm', 'yyyy/MM/dd', 'yyyy-MM-dd', or a period format e.g. '-5d', '4w 2d'."
    )


def _property(issue: Issue, key: str, path: list[str]) -> str | None:
    found: Any = issue.properties.get(key)
    for step in path:
        if not isinstance(found, dict):
            return None
        found = found.get(step)
    if found is None or isinstance(found, dict | list):
        return None
    if isinstance(found, bool):
        return str(found).lower()
    return str(found)
