"""Incident operations: every change is one transaction that bumps the version, writes timeline entries
and emits its event (outbox), so what subscribers and connectors see always matches what was stored.

`creation` holds the create path (Core statements, the number taken in the same transaction),
`numbering` the human numbers, `service` the other operations, `rows` the rows and their models.
"""

from __future__ import annotations

from incident_hub.incidents.creation import Created
from incident_hub.incidents.service import EscalationResult, IncidentService, Page

__all__ = ["Created", "EscalationResult", "IncidentService", "Page"]
