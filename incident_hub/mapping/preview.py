"""Previews: what a mapping would do with a sample, with no side effects.

Inbound, a vendor webhook is parsed by a private connector instance whose vendor address cannot be
reached (`https://preview.invalid`), without its signature being checked, and translated as if the
object were new; nothing is stored. Outbound, the vendor fields a push of the incident would send.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from incident_hub.connectors.base import ChangeKind, ConnectorConfig, WebhookRejected, build
from incident_hub.errors import InvalidRequest
from incident_hub.mapping.document import MappingDocument
from incident_hub.mapping.translate import to_canonical, to_vendor
from incident_hub.model import Incident

UNREACHABLE = "https://preview.invalid"


def inbound(
    config: ConnectorConfig, document: MappingDocument, body: bytes, headers: Mapping[str, str]
) -> dict[str, Any]:
    connector = build(config.model_copy(update={"base_url": UNREACHABLE}))
    connector.use_mapping(document)
    try:
        changes = connector.read_webhook({k.lower(): v for k, v in headers.items()}, body)
    except WebhookRejected as error:
        # A delivery the connector can only understand by reading the object from the vendor (an
        # unsigned Jira webhook) cannot be previewed: the preview never calls the vendor.
        raise InvalidRequest(f"cannot preview this webhook: {error.reason}") from error
    finally:
        connector.shutdown_executor()
    previewed: list[dict[str, Any]] = []
    for change in changes:
        patch = to_canonical(document, None, change.fields)
        entry: dict[str, Any] = {
            "kind": change.kind.value,
            "external_id": change.external_id,
            "external_key": change.external_key,
            "vendor_fields": change.fields,
            "vendor_timestamp": change.vendor_timestamp.isoformat(),
            "actor": change.actor,
            "echo": change.actor_is_self,
            "canonical": {
                "status": patch.status.value if patch.status else None,
                "severity": patch.severity.value if patch.severity else None,
                "fields": patch.fields,
                "unmapped": [{"field": f, "value": v} for f, v in patch.unmapped],
            },
        }
        if change.note is not None:
            entry["note"] = {
                "body": change.note.body,
                "author": change.note.author,
                "is_public": change.note.is_public,
                "synced": document.notes.inbound,
            }
        if change.kind is ChangeKind.NOTE and not document.notes.inbound:
            entry["ignored"] = "notes.inbound is false"
        previewed.append(entry)
    return {"changes": previewed}


def outbound(config: ConnectorConfig, document: MappingDocument, incident: Incident) -> dict[str, Any]:
    routing = document.routing if document.routing is not None else config.routing
    return {
        "routed": routing.admits(incident),
        "fields": to_vendor(document, incident),
        "note_format": document.notes.format if document.notes.outbound else None,
    }
