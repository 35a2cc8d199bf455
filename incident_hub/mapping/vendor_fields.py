"""The vendor fields a mapping may name, per connector kind (data: `defaults/vendor_fields.yaml`)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cache
from typing import Any

import yaml

from incident_hub.mapping.document import DEFAULTS


@dataclass(frozen=True)
class VendorFields:
    known: frozenset[str]
    custom: re.Pattern[str] | None
    team_field: str | None

    def knows(self, path: str) -> bool:
        """Whether `path` names a field this vendor has (checked by its first segment)."""
        head = path.split(".", 1)[0]
        return head in self.known or (self.custom is not None and self.custom.fullmatch(head) is not None)


@cache
def vendor_fields(kind: str) -> VendorFields | None:
    """The fields of a connector kind; None for kinds without a list (third-party connectors), whose
    field names are not checked."""
    listed: dict[str, Any] = yaml.safe_load((DEFAULTS / "vendor_fields.yaml").read_text())
    entry = listed.get(kind)
    if entry is None:
        return None
    custom = entry.get("custom")
    return VendorFields(
        known=frozenset(entry["known"]),
        custom=re.compile(custom) if custom else None,
        team_field=entry.get("team_field"),
    )
