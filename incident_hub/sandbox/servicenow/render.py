"""Records as the Table API shows them (docs/c_TableAPI.md, table-api-examples/*.json): every value a
string; a reference field `{"link", "value"}` unless `sysparm_exclude_reference_link=true`;
`sysparm_display_value` `false` (values), `true` (display values) or `all` (`{"display_value", "value"}`);
`sysparm_fields` picks fields, ignoring invalid ones; an empty reference is `""`."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from incident_hub.sandbox.servicenow.state import CHOICES, REFERENCES, ServiceNowState


@dataclass(frozen=True)
class View:
    """The rendering parameters of one request."""

    base_url: str
    display_value: str = "false"  # false | true | all
    exclude_reference_link: bool = False
    fields: tuple[str, ...] = ()

    @classmethod
    def of(cls, params: Any, base_url: str) -> View:
        display = str(params.get("sysparm_display_value", "false")).lower()
        fields = tuple(f.strip() for f in str(params.get("sysparm_fields", "")).split(",") if f.strip())
        return cls(
            base_url=base_url.rstrip("/"),
            display_value=display if display in ("true", "all") else "false",
            exclude_reference_link=str(params.get("sysparm_exclude_reference_link", "")).lower() == "true",
            fields=fields,
        )


def render(state: ServiceNowState, table: str, record: dict[str, str], view: View) -> dict[str, Any]:
    names = [f for f in view.fields if f in record] if view.fields else list(record)
    references = REFERENCES if table == "incident" else {}
    return {
        name: _field(state, table, name, record[name], references.get(name), view)
        for name in names
        if not name.startswith("_")
    }


def _field(state: ServiceNowState, table: str, name: str, value: str, target: str | None, view: View) -> Any:
    if target is not None and value:
        display = state.display(target, value)
        link = f"{view.base_url}/api/now/table/{target}/{value}"
        if view.display_value == "false":
            return value if view.exclude_reference_link else {"link": link, "value": value}
        if view.display_value == "true":
            return display if view.exclude_reference_link else {"display_value": display, "link": link}
        shown = {"display_value": display, "value": value}
        return shown if view.exclude_reference_link else {**shown, "link": link}
    display = CHOICES.get(name, {}).get(value, value) if table == "incident" else value
    if view.display_value == "false":
        return value
    if view.display_value == "true":
        return display
    return {"display_value": display, "value": value}
