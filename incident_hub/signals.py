"""Component health signals from monitoring: `stuck`/`stopped` opens an incident, `active` resolves it.

A signal names a host, a device on it, a component of that device and, for capture devices, the capture
folder it writes to. Its key (`signal:host/device/component`, then `/capture folder` when one is named) is
the incident's dedup key, so at most one incident is open per (device, capture folder, component). Most
signals repeat what is already known (a component that stays stuck reports every minute): those cost one
read. The incident carries what the signal said as tags (`host:`, `device:`, `component:`,
`capture_folder:`, `device_name:`, `video_device:`, `incident_type:`), which the incident list filters on.

Signals take the monitor's own field names as well (`host_name`, `device_id`). A field the model does not
know is refused (422, naming it) rather than kept: a misspelt `capture_folder` would otherwise file the
fault under another key and open a second incident for it.

Severity by rule: `stopped` is SEV1_CRITICAL, `stuck` SEV2_HIGH; a stuck component that stops raises its
open incident to SEV1. `active` resolves the open incident with a resolution note.
"""

from __future__ import annotations

import hashlib
from enum import StrEnum

from pydantic import AliasChoices, BaseModel, ConfigDict, Field
from sqlalchemy import select

from incident_hub.clock import utcnow
from incident_hub.commands import EscalationRequest, IncidentDraft, IncidentPatch, StatusChange
from incident_hub.incidents import IncidentService
from incident_hub.model import OPEN_STATUSES, Severity, Status, Timestamp
from incident_hub.store.tables import IncidentRow


class ComponentStatus(StrEnum):
    ACTIVE = "active"
    STUCK = "stuck"
    STOPPED = "stopped"


SEVERITY = {ComponentStatus.STOPPED: Severity.SEV1_CRITICAL, ComponentStatus.STUCK: Severity.SEV2_HIGH}
_RANK = list(Severity)
# The incidents' dedup key column holds 255 characters; a longer key is stored as its digest.
_KEY_LIMIT = 255


class Signal(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "host": "db-2",
                    "device": "nvme0",
                    "component": "replication",
                    "status": "stuck",
                    "message": "replica lag 900 s",
                },
                {
                    "host_name": "capture-01",
                    "device_id": "cam-07",
                    "device_name": "Studio B camera",
                    "capture_folder": "/srv/capture/studio-b",
                    "video_device": "/dev/video2",
                    "incident_type": "ffmpeg_failure",
                    "component": "ffmpeg",
                    "status": "stopped",
                    "message": "ffmpeg exited with code 1",
                },
            ]
        },
    )

    host: str = Field(
        min_length=1,
        max_length=100,
        pattern=r"^[^/]+$",
        validation_alias=AliasChoices("host", "host_name"),
        description="The host (also accepted as `host_name`).",
    )
    device: str = Field(
        min_length=1,
        max_length=100,
        pattern=r"^[^/]+$",
        validation_alias=AliasChoices("device", "device_id"),
        description="The device on the host (also accepted as `device_id`).",
    )
    component: str = Field(min_length=1, max_length=100, pattern=r"^[^/]+$")
    status: ComponentStatus
    capture_folder: str | None = Field(
        default=None,
        min_length=1,
        max_length=500,
        description="The folder a capture device writes to: one open incident per device, capture folder "
        "and component.",
    )
    device_name: str | None = Field(default=None, min_length=1, max_length=200)
    video_device: str | None = Field(default=None, min_length=1, max_length=200, examples=["/dev/video0"])
    incident_type: str | None = Field(
        default=None,
        min_length=1,
        max_length=100,
        examples=["ffmpeg_failure", "monitor_failure", "system_failure"],
    )
    message: str | None = Field(default=None, max_length=2000)
    observed_at: Timestamp | None = Field(default=None, description="When the monitor saw it (for the note).")

    @property
    def key(self) -> str:
        """The dedup key of the incident this signal is about."""
        key = f"signal:{self.host}/{self.device}/{self.component}"
        if self.capture_folder is not None:
            # Host, device and component hold no `/`: everything after the third one is the folder.
            key += f"/{self.capture_folder}"
        if len(key) > _KEY_LIMIT:
            key = f"signal:sha256:{hashlib.sha256(key.encode()).hexdigest()}"
        return key

    def tags(self) -> list[str]:
        """What the signal says about its subject, as the incident's tags."""
        named = {
            "host": self.host,
            "device": self.device,
            "component": self.component,
            "capture_folder": self.capture_folder,
            "device_name": self.device_name,
            "video_device": self.video_device,
            "incident_type": self.incident_type,
        }
        return [f"{name}:{value}" for name, value in named.items() if value is not None]


class SignalAction(StrEnum):
    OPENED = "opened"
    ALREADY_OPEN = "already_open"
    RAISED = "raised"
    RESOLVED = "resolved"
    NOTHING_OPEN = "nothing_open"


class SignalOutcome(BaseModel):
    """What a signal did; `incident_id` is the human id as on incidents and events, `id` the uuid."""

    action: SignalAction
    incident_id: str | None = None
    id: str | None = None
    number: str | None = None
    severity: Severity | None = None


class Signals:
    def __init__(self, incidents: IncidentService) -> None:
        self.incidents = incidents
        self.db = incidents.db

    def process(self, signal: Signal) -> SignalOutcome:
        """Apply one signal; a repeat of what the open incident already says is one read and no write."""
        with self.db.read() as session:
            found = session.execute(
                select(IncidentRow.id, IncidentRow.number, IncidentRow.severity).where(
                    IncidentRow.dedup_key == signal.key, IncidentRow.status.in_(OPEN_STATUSES)
                )
            ).first()
        said = _said(signal)
        if signal.status is ComponentStatus.ACTIVE:
            if found is None:
                return SignalOutcome(action=SignalAction.NOTHING_OPEN)
            incident_id = str(found.id)
            self.incidents.patch(
                incident_id, IncidentPatch(resolution_notes=f"Auto-resolved: {said}", author="signals")
            )
            resolved = self.incidents.change_status(
                incident_id, StatusChange(status=Status.RESOLVED, message=said, author="signals")
            )
            return SignalOutcome(
                action=SignalAction.RESOLVED,
                incident_id=resolved.number,
                id=incident_id,
                number=resolved.number,
                severity=resolved.severity,
            )
        wanted = SEVERITY[signal.status]
        if found is not None:
            current = Severity(found.severity)
            if _RANK.index(wanted) >= _RANK.index(current):
                return SignalOutcome(
                    action=SignalAction.ALREADY_OPEN,
                    incident_id=found.number,
                    id=str(found.id),
                    number=found.number,
                    severity=current,
                )
            raised = self.incidents.escalate(
                str(found.id), EscalationRequest(reason=said, target_severity=wanted, author="signals")
            )
            return SignalOutcome(
                action=SignalAction.RAISED,
                incident_id=raised.incident.number,
                id=str(found.id),
                number=raised.incident.number,
                severity=raised.incident.severity,
            )
        created = self.incidents.create(
            IncidentDraft(
                title=_title(signal),
                description=signal.message,
                severity=wanted,
                dedup_key=signal.key,
                source="signals",
                # The monitor's first sighting starts the time to detect; unstated, it is now.
                first_signal_at=signal.observed_at or utcnow(),
                tags=signal.tags(),
                author="signals",
            )
        )
        incident = created.incident
        action = SignalAction.OPENED if not created.deduplicated else SignalAction.ALREADY_OPEN
        return SignalOutcome(
            action=action,
            incident_id=incident.number,
            id=str(incident.id),
            number=incident.number,
            severity=incident.severity,
        )


def _subject(signal: Signal) -> str:
    folder = f" ({signal.capture_folder})" if signal.capture_folder else ""
    return f"{signal.host}/{signal.device}{folder}"


def _title(signal: Signal) -> str:
    kind = f"{signal.incident_type}: " if signal.incident_type else ""
    return f"{kind}{signal.component} {signal.status.value} on {_subject(signal)}"[:500]


def _said(signal: Signal) -> str:
    when = f" at {signal.observed_at.isoformat()}" if signal.observed_at else ""
    detail = f": {signal.message}" if signal.message else ""
    return f"{signal.component} on {_subject(signal)} {signal.status.value}{when}{detail}"
