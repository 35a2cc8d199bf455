"""Encoded queries (`sysparm_query`), the subset docs/c_TableAPI.md lists: `=`, `!=`, `LIKE`, `STARTSWITH`,
`ENDSWITH`, the comparisons `>`, `>=`, `<`, `<=` (the platform's operator list; date-times compare as
their `yyyy-MM-dd HH:mm:ss` text), `ISEMPTY`, `ISNOTEMPTY`, `^` (AND), `^OR`, `ORDERBY<field>` and
`ORDERBYDESC<field>`. As the docs say, an invalid part (an unknown field) is ignored.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field

_OPERATORS = ("ISNOTEMPTY", "ISEMPTY", "STARTSWITH", "ENDSWITH", "LIKE", "!=", ">=", "<=", "=", ">", "<")
_FIELD = re.compile(r"[A-Za-z_][A-Za-z0-9_.]*")

Condition = Callable[[dict[str, str]], bool]


@dataclass
class EncodedQuery:
    """Conditions in AND groups of ORs, and the order to sort by: (field, descending)."""

    groups: list[list[Condition]] = field(default_factory=list)
    order: list[tuple[str, bool]] = field(default_factory=list)

    def matches(self, record: dict[str, str]) -> bool:
        return all(any(c(record) for c in group) for group in self.groups)

    def sort(self, records: list[dict[str, str]]) -> list[dict[str, str]]:
        for name, descending in reversed(self.order):
            records = sorted(records, key=lambda r, n=name: r.get(n, ""), reverse=descending)  # type: ignore[misc]
        return records


def parse(text: str, known: Callable[[str], bool]) -> EncodedQuery:
    query = EncodedQuery()
    # `^^` stands for a literal caret inside a value.
    parts = text.replace("^^", "\0").split("^") if text else []
    for raw in parts:
        part = raw.replace("\0", "^")
        if not part or part == "EQ":
            continue
        if part.startswith("ORDERBYDESC"):
            query.order.append((part.removeprefix("ORDERBYDESC"), True))
            continue
        if part.startswith("ORDERBY"):
            query.order.append((part.removeprefix("ORDERBY"), False))
            continue
        alternative = part.startswith("OR") and bool(query.groups) and _condition(part[2:], known) is not None
        condition = _condition(part[2:] if alternative else part, known)
        if condition is None:
            continue
        if alternative:
            query.groups[-1].append(condition)
        else:
            query.groups.append([condition])
    return query


def _condition(part: str, known: Callable[[str], bool]) -> Condition | None:
    """`<field><operator><value>`: the longest known field name the operator follows (names and
    operators are both letters: `short_descriptionSTARTSWITHg`)."""
    match = _FIELD.match(part)
    if match is None:
        return None
    for end in range(match.end(), 0, -1):
        name, rest = part[:end], part[end:]
        if not known(name):
            continue
        operator = next((o for o in _OPERATORS if rest.startswith(o)), None)
        if operator is not None:
            return _test(name, operator, rest[len(operator) :])
    return None


def _test(name: str, operator: str, value: str) -> Condition:
    tests: dict[str, Callable[[str], bool]] = {
        "=": lambda v: v == value,
        "!=": lambda v: v != value,
        "LIKE": lambda v: value.lower() in v.lower(),
        "STARTSWITH": lambda v: v.lower().startswith(value.lower()),
        "ENDSWITH": lambda v: v.lower().endswith(value.lower()),
        ">": lambda v: _key(v) > _key(value),
        ">=": lambda v: _key(v) >= _key(value),
        "<": lambda v: _key(v) < _key(value),
        "<=": lambda v: _key(v) <= _key(value),
        "ISEMPTY": lambda v: v == "",
        "ISNOTEMPTY": lambda v: v != "",
    }
    test = tests[operator]
    return lambda record: test(record.get(name, ""))


def _key(value: str) -> tuple[int, float | str]:
    """Numbers compare as numbers (choice values, counts), everything else as text (date-times)."""
    try:
        return 0, float(value)
    except ValueError:
        return 1, value
