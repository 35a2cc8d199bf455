"""The hub's tables (SQLAlchemy 2 ORM). Migrations in `migrations/versions/` must match these.

The sync road's tables are here; each capability of the operations layer keeps its own in a module of
its name (`store/tables/alerts.py`), imported at the end so `Base.metadata` holds every table."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    ColumnElement,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
    cast,
    func,
    literal_column,
    text,
)
from sqlalchemy.orm import InstrumentedAttribute, Mapped, mapped_column, relationship

from incident_hub.store.tables.base import Base as Base
from incident_hub.store.tables.base import StructuredJson
from incident_hub.store.tables.base import UtcDateTime as UtcDateTime

# Incidents in these statuses are not "open": the dedup-key index only covers the others.
OPEN_INDEX_WHERE = "dedup_key IS NOT NULL AND status NOT IN ('RESOLVED', 'CLOSED')"


def _joined(*parts: ColumnElement[Any] | InstrumentedAttribute[Any]) -> ColumnElement[str]:
    """The parts as one text, blanks for nulls. Literals are inline, not bound, so PostgreSQL matches a
    query's expression to the index declared on the same one."""
    blank = text("''")
    joined: ColumnElement[str] = func.coalesce(parts[0], blank)
    for part in parts[1:]:
        joined = joined.op("||")(text("' '")).op("||")(func.coalesce(part, blank))
    return joined


class IncidentRow(Base):
    __tablename__ = "incidents"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    number: Mapped[str] = mapped_column(String(32), unique=True)
    title: Mapped[str] = mapped_column(String(500))
    description: Mapped[str | None] = mapped_column(Text)
    severity: Mapped[str] = mapped_column(String(16))
    status: Mapped[str] = mapped_column(String(16))
    affected_services: Mapped[list[Any]] = mapped_column(StructuredJson, default=list)
    assigned_team: Mapped[str | None] = mapped_column(String(200))
    assignee: Mapped[str | None] = mapped_column(String(200))
    commander: Mapped[str | None] = mapped_column(String(200))
    tech_lead: Mapped[str | None] = mapped_column(String(200))
    comms_lead: Mapped[str | None] = mapped_column(String(200))
    detected_at: Mapped[datetime]
    acknowledged_at: Mapped[datetime | None]
    mitigated_at: Mapped[datetime | None]
    resolved_at: Mapped[datetime | None]
    closed_at: Mapped[datetime | None]
    sla_deadline: Mapped[datetime | None]
    sla_breached: Mapped[bool] = mapped_column(Boolean, default=False)
    root_cause: Mapped[str | None] = mapped_column(Text)
    resolution_notes: Mapped[str | None] = mapped_column(Text)
    summary: Mapped[dict[str, Any] | None] = mapped_column(StructuredJson)
    dedup_key: Mapped[str | None] = mapped_column(String(255))
    source: Mapped[str | None] = mapped_column(String(100))
    tags: Mapped[list[Any]] = mapped_column(StructuredJson, default=list)
    version: Mapped[int] = mapped_column(Integer, default=1)
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]
    # When the first alert or signal about the problem fired (None: the incident did not come from one).
    first_signal_at: Mapped[datetime | None]
    # Lifecycle durations in seconds, kept by the transitions (`incidents/durations.py`) so that reports
    # aggregate columns instead of subtracting timestamps row by row. None until both ends are known.
    time_to_detect_seconds: Mapped[float | None] = mapped_column(Float)
    time_to_acknowledge_seconds: Mapped[float | None] = mapped_column(Float)
    acknowledge_to_resolve_seconds: Mapped[float | None] = mapped_column(Float)
    time_to_resolve_seconds: Mapped[float | None] = mapped_column(Float)

    __table_args__ = (
        Index(
            "uq_incidents_open_dedup_key",
            "dedup_key",
            unique=True,
            sqlite_where=text(OPEN_INDEX_WHERE),
            postgresql_where=text(OPEN_INDEX_WHERE),
        ),
        # The list's filters, each one range ending in its order, newest first (`incident_pages`): no
        # filter, a team, status and/or severity, a team with status and/or severity. A status alone is
        # read as one range per severity (and the other way round), so neither needs an index of its own.
        Index("ix_incidents_created", "created_at", "id"),
        Index("ix_incidents_team_created", "assigned_team", "created_at", "id"),
        Index("ix_incidents_status_severity_created", "status", "severity", "created_at", "id"),
        Index(
            "ix_incidents_team_status_severity_created",
            "assigned_team",
            "status",
            "severity",
            "created_at",
            "id",
        ),
        # Reports over a window of detection or resolution times.
        Index("ix_incidents_detected", "detected_at"),
        Index("ix_incidents_resolved", "resolved_at"),
        # The search filters that are one range in the list's order.
        Index("ix_incidents_source_created", "source", "created_at", "id"),
        Index("ix_incidents_breached_created", "sla_breached", "created_at", "id"),
    )

    timeline: Mapped[list[TimelineRow]] = relationship(back_populates="incident", order_by="TimelineRow.id")
    steps: Mapped[list[ResolutionStepRow]] = relationship(order_by="ResolutionStepRow.step_number")
    responses: Mapped[list[AutomatedResponseRow]] = relationship(order_by="AutomatedResponseRow.seq")
    external_refs: Mapped[list[ExternalRefRow]] = relationship(order_by="ExternalRefRow.id")


# Free text of an incident (title, description, structured summary) and its root cause (the field and the
# summary's), as the list's `q` and `root_cause` filters match them.
INCIDENT_TEXT = _joined(IncidentRow.title, IncidentRow.description, cast(IncidentRow.summary, Text))
INCIDENT_ROOT_CAUSE = _joined(
    IncidentRow.root_cause, IncidentRow.summary.op("->>", return_type=Text)(literal_column("'root_cause'"))
)

# PostgreSQL only: containment on the structured fields (GIN, jsonb_path_ops answers `@>`) and substring
# search by trigrams (pg_trgm; migration 0011 skips these two where the extension cannot be created).
for _index in (
    Index(
        "ix_incidents_tags",
        IncidentRow.tags,
        postgresql_using="gin",
        postgresql_ops={"tags": "jsonb_path_ops"},
    ),
    Index(
        "ix_incidents_services",
        IncidentRow.affected_services,
        postgresql_using="gin",
        postgresql_ops={"affected_services": "jsonb_path_ops"},
    ),
    Index(
        "ix_incidents_text_trgm",
        INCIDENT_TEXT.label("incident_text"),
        postgresql_using="gin",
        postgresql_ops={"incident_text": "gin_trgm_ops"},
    ),
    Index(
        "ix_incidents_root_cause_trgm",
        INCIDENT_ROOT_CAUSE.label("incident_root_cause"),
        postgresql_using="gin",
        postgresql_ops={"incident_root_cause": "gin_trgm_ops"},
    ),
):
    _index.ddl_if(dialect="postgresql")


class IncidentCounterRow(Base):
    """Last human number handed out per UTC day (`INC-YYYYMMDD-NNN`)."""

    __tablename__ = "incident_counters"

    day: Mapped[str] = mapped_column(String(8), primary_key=True)
    last: Mapped[int] = mapped_column(Integer)


class TimelineRow(Base):
    __tablename__ = "timeline_entries"

    id: Mapped[int] = mapped_column(
        BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True
    )
    incident_id: Mapped[str] = mapped_column(ForeignKey("incidents.id", ondelete="CASCADE"))
    type: Mapped[str] = mapped_column(String(32))
    message: Mapped[str] = mapped_column(Text)
    author: Mapped[str | None] = mapped_column(String(200))
    is_public: Mapped[bool] = mapped_column(Boolean, default=True)
    timestamp: Mapped[datetime]
    origin_connector: Mapped[str | None] = mapped_column(String(100))
    external_comment_id: Mapped[str | None] = mapped_column(String(200))

    incident: Mapped[IncidentRow] = relationship(back_populates="timeline")

    # An incident's timeline in order, without a sort; on PostgreSQL, substring search of the messages.
    __table_args__ = (
        Index("ix_timeline_entries_incident", "incident_id", "id"),
        Index(
            "ix_timeline_entries_message_trgm",
            "message",
            postgresql_using="gin",
            postgresql_ops={"message": "gin_trgm_ops"},
        ).ddl_if(dialect="postgresql"),
    )


class ResolutionStepRow(Base):
    __tablename__ = "resolution_steps"

    id: Mapped[int] = mapped_column(
        BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True
    )
    incident_id: Mapped[str] = mapped_column(ForeignKey("incidents.id", ondelete="CASCADE"))
    step_number: Mapped[int] = mapped_column(Integer)
    action_taken: Mapped[str] = mapped_column(Text)
    performed_by: Mapped[str | None] = mapped_column(String(200))
    timestamp: Mapped[datetime]

    __table_args__ = (UniqueConstraint("incident_id", "step_number"),)


class AutomatedResponseRow(Base):
    __tablename__ = "automated_responses"

    seq: Mapped[int] = mapped_column(
        BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True
    )
    response_id: Mapped[str] = mapped_column(String(64))
    incident_id: Mapped[str] = mapped_column(ForeignKey("incidents.id", ondelete="CASCADE"), index=True)
    action_type: Mapped[str] = mapped_column(String(100))
    details: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    execution_status: Mapped[str] = mapped_column(String(16))
    executed_at: Mapped[datetime | None]

    __table_args__ = (UniqueConstraint("incident_id", "response_id"),)


class EscalationRow(Base):
    __tablename__ = "escalations"

    id: Mapped[int] = mapped_column(
        BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True
    )
    incident_id: Mapped[str] = mapped_column(ForeignKey("incidents.id", ondelete="CASCADE"), index=True)
    reason: Mapped[str] = mapped_column(Text)
    from_severity: Mapped[str] = mapped_column(String(16))
    to_severity: Mapped[str] = mapped_column(String(16))
    from_team: Mapped[str | None] = mapped_column(String(200))
    to_team: Mapped[str | None] = mapped_column(String(200))
    escalated_by: Mapped[str | None] = mapped_column(String(200))
    escalated_at: Mapped[datetime]


class ExternalRefRow(Base):
    """Link from a canonical incident to one vendor object."""

    __tablename__ = "external_refs"

    id: Mapped[int] = mapped_column(
        BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True
    )
    incident_id: Mapped[str] = mapped_column(ForeignKey("incidents.id", ondelete="CASCADE"), index=True)
    connector_id: Mapped[str] = mapped_column(String(100))
    external_id: Mapped[str] = mapped_column(String(200))
    external_key: Mapped[str | None] = mapped_column(String(200))
    url: Mapped[str | None] = mapped_column(String(1000))
    last_synced_version: Mapped[int | None] = mapped_column(Integer)
    last_vendor_timestamp: Mapped[datetime | None]
    fingerprint: Mapped[str | None] = mapped_column(String(128))
    # The vendor field values we last wrote: an inbound change equal to them is our own echo, and the next
    # push sends only the fields that differ.
    written: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)

    __table_args__ = (
        UniqueConstraint("connector_id", "external_id"),
        UniqueConstraint("incident_id", "connector_id"),
    )


class EventRow(Base):
    """A domain event, written in the same transaction as the change it reports."""

    __tablename__ = "events"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    incident_id: Mapped[str | None] = mapped_column(String(36), index=True)
    type: Mapped[str] = mapped_column(String(64), index=True)
    payload: Mapped[dict[str, Any]] = mapped_column(JSON)
    created_at: Mapped[datetime]


class SubscriptionRow(Base):
    __tablename__ = "subscriptions"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    name: Mapped[str | None] = mapped_column(String(200))
    url: Mapped[str] = mapped_column(String(2000))
    event_types: Mapped[list[Any]] = mapped_column(JSON)
    # The signing secret must be readable to sign with; it is never returned by the API or logged.
    secret: Mapped[str] = mapped_column(String(500))
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[datetime]


class DeliveryRow(Base):
    """One event to one target (a subscriber, later a connector): the outbox the dispatcher drains."""

    __tablename__ = "deliveries"

    id: Mapped[int] = mapped_column(
        BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True
    )
    event_id: Mapped[str] = mapped_column(ForeignKey("events.id"))
    target_kind: Mapped[str] = mapped_column(String(16))
    target_id: Mapped[str] = mapped_column(String(100))
    # Deliveries for one (ordering_key, target) go out in id order.
    ordering_key: Mapped[str] = mapped_column(String(64))
    state: Mapped[str] = mapped_column(String(16))
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime]
    lease_until: Mapped[datetime | None]
    leased_by: Mapped[str | None] = mapped_column(String(100))
    last_error: Mapped[str | None] = mapped_column(Text)
    last_status_code: Mapped[int | None] = mapped_column(Integer)
    created_at: Mapped[datetime]
    delivered_at: Mapped[datetime | None]
    # Connector deliveries: the mapping version that mapped what the last push sent.
    mapping_version: Mapped[int | None] = mapped_column(Integer)
    # A create whose outcome was unknown: since when, until when the hub looks for the object before it
    # creates again, each look ({at, outcome, external_id}), and how the doubt ended (None: still open).
    in_doubt_since: Mapped[datetime | None]
    in_doubt_until: Mapped[datetime | None]
    in_doubt_looks: Mapped[list[Any] | None] = mapped_column(JSON)
    in_doubt_outcome: Mapped[str | None] = mapped_column(String(32))

    __table_args__ = (
        Index("ix_deliveries_due", "state", "next_attempt_at"),
        Index("ix_deliveries_order", "target_kind", "target_id", "ordering_key", "id"),
    )


class DuplicateRow(Base):
    """A vendor object carrying the id of an incident linked to another object of the same connector:
    never written by the hub (the link names the kept one)."""

    __tablename__ = "vendor_duplicates"

    id: Mapped[int] = mapped_column(
        BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True
    )
    connector_id: Mapped[str] = mapped_column(String(100))
    incident_id: Mapped[str] = mapped_column(ForeignKey("incidents.id", ondelete="CASCADE"), index=True)
    external_id: Mapped[str] = mapped_column(String(200))
    external_key: Mapped[str | None] = mapped_column(String(200))
    url: Mapped[str | None] = mapped_column(String(1000))
    kept_external_id: Mapped[str] = mapped_column(String(200))
    vendor_created_at: Mapped[datetime | None]
    found_at: Mapped[datetime]
    # "push" (a look before a create), "webhook" or "reconciler".
    found_by: Mapped[str] = mapped_column(String(32))
    cancelled_at: Mapped[datetime | None]
    cancel_error: Mapped[str | None] = mapped_column(Text)

    __table_args__ = (UniqueConstraint("connector_id", "external_id"),)


class DeliveryAttemptRow(Base):
    __tablename__ = "delivery_attempts"

    id: Mapped[int] = mapped_column(
        BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True
    )
    delivery_id: Mapped[int] = mapped_column(ForeignKey("deliveries.id", ondelete="CASCADE"), index=True)
    attempt: Mapped[int] = mapped_column(Integer)
    started_at: Mapped[datetime]
    duration_ms: Mapped[float] = mapped_column()
    status_code: Mapped[int | None] = mapped_column(Integer)
    error: Mapped[str | None] = mapped_column(Text)


class ApiKeyRow(Base):
    __tablename__ = "api_keys"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    prefix: Mapped[str] = mapped_column(String(16), unique=True)
    key_hash: Mapped[str] = mapped_column(String(64))
    scopes: Mapped[list[Any]] = mapped_column(JSON)
    created_at: Mapped[datetime]
    revoked_at: Mapped[datetime | None]


class ConnectorRow(Base):
    """A configured connector instance; credentials are references (env var / file), never values."""

    __tablename__ = "connectors"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    kind: Mapped[str] = mapped_column(String(64))
    config: Mapped[dict[str, Any]] = mapped_column(JSON)
    source: Mapped[str] = mapped_column(String(16))
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    paused_until: Mapped[datetime | None]
    pause_reason: Mapped[str | None] = mapped_column(Text)
    consecutive_failures: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]


class InboxRow(Base):
    """A raw inbound webhook, stored before anything else happens (deduplicated per connector)."""

    __tablename__ = "inbox"

    id: Mapped[int] = mapped_column(
        BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True
    )
    connector_id: Mapped[str] = mapped_column(String(64))
    dedup_key: Mapped[str] = mapped_column(String(200))
    received_at: Mapped[datetime]
    headers: Mapped[dict[str, Any]] = mapped_column(JSON)
    body: Mapped[str] = mapped_column(Text)
    state: Mapped[str] = mapped_column(String(16))
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    lease_until: Mapped[datetime | None]
    error: Mapped[str | None] = mapped_column(Text)
    processed_at: Mapped[datetime | None]
    # The vendor object the webhook is about (`connector:external id`): rows about one object are applied
    # in arrival order, rows about different objects in parallel. None: about no object we follow.
    subject: Mapped[str | None] = mapped_column(String(300))

    __table_args__ = (
        UniqueConstraint("connector_id", "dedup_key"),
        Index("ix_inbox_pending", "state", "id"),
        Index("ix_inbox_pending_subject", "state", "subject", "id"),
    )


class WebhookRejectionRow(Base):
    """An inbound webhook refused (unsigned, forged, malformed, unknown connector), kept for audit."""

    __tablename__ = "webhook_rejections"

    id: Mapped[int] = mapped_column(
        BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True
    )
    connector_id: Mapped[str] = mapped_column(String(200))
    received_at: Mapped[datetime]
    status: Mapped[int] = mapped_column(Integer)
    reason: Mapped[str] = mapped_column(Text)
    body_sha256: Mapped[str] = mapped_column(String(64))
    body_excerpt: Mapped[str] = mapped_column(Text)
    remote_addr: Mapped[str | None] = mapped_column(String(100))


class UnmappedValueRow(Base):
    """A vendor value the connector's mapping does not cover, seen on an inbound change."""

    __tablename__ = "unmapped_values"

    id: Mapped[int] = mapped_column(
        BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True
    )
    connector_id: Mapped[str] = mapped_column(String(64))
    field: Mapped[str] = mapped_column(String(200))
    value: Mapped[str] = mapped_column(String(500))
    first_seen: Mapped[datetime]
    last_seen: Mapped[datetime]
    count: Mapped[int] = mapped_column(Integer, default=1)

    __table_args__ = (UniqueConstraint("connector_id", "field", "value"),)


class ReconciliationRunRow(Base):
    """One reconciliation pass over one connector: what it looked at, what drift it found and repaired."""

    __tablename__ = "reconciliation_runs"

    id: Mapped[int] = mapped_column(
        BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True
    )
    connector_id: Mapped[str] = mapped_column(String(64))
    kind: Mapped[str] = mapped_column(String(16))
    trigger: Mapped[str] = mapped_column(String(16))
    state: Mapped[str] = mapped_column(String(16))
    started_at: Mapped[datetime]
    ended_at: Mapped[datetime | None]
    # Incremental passes: objects changed since this vendor time were asked for.
    window_start: Mapped[datetime | None]
    examined: Mapped[int] = mapped_column(Integer, default=0)
    drift_found: Mapped[int] = mapped_column(Integer, default=0)
    drift_repaired: Mapped[int] = mapped_column(Integer, default=0)
    errors: Mapped[str | None] = mapped_column(Text)

    __table_args__ = (Index("ix_reconciliation_runs_connector", "connector_id", "kind", "id"),)


class ReconciliationWatermarkRow(Base):
    """Per connector, the start of the last successful incremental pass: the next asks from here."""

    __tablename__ = "reconciliation_watermarks"

    connector_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    watermark: Mapped[datetime]
    updated_at: Mapped[datetime]


class MappingVersionRow(Base):
    """One version of a connector's mapping document: every change is a new row, none is edited."""

    __tablename__ = "mapping_versions"

    id: Mapped[int] = mapped_column(
        BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True
    )
    connector_id: Mapped[str] = mapped_column(String(64))
    version: Mapped[int] = mapped_column(Integer)
    document: Mapped[dict[str, Any]] = mapped_column(JSON)
    yaml: Mapped[str] = mapped_column(Text)
    author: Mapped[str | None] = mapped_column(String(200))
    comment: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime]

    __table_args__ = (UniqueConstraint("connector_id", "version", name="uq_mapping_versions_version"),)


class AuditEntryRow(Base):
    """One admin action: who (API key name and id), what, on which target, when, with what detail."""

    __tablename__ = "audit_log"

    id: Mapped[int] = mapped_column(
        BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True
    )
    at: Mapped[datetime] = mapped_column(index=True)
    actor: Mapped[str] = mapped_column(String(300))
    action: Mapped[str] = mapped_column(String(100))
    target: Mapped[str] = mapped_column(String(300))
    detail: Mapped[dict[str, Any]] = mapped_column(JSON)


class AdminSessionRow(Base):
    """A logged-in admin UI session, served by any worker or replica. The browser's cookie holds a random
    token; only its SHA-256 is stored, so a copy of this table opens no session."""

    __tablename__ = "admin_sessions"

    token_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    api_key_id: Mapped[str] = mapped_column(
        String(36), ForeignKey("api_keys.id", ondelete="CASCADE"), index=True
    )
    csrf_token: Mapped[str] = mapped_column(String(64))
    flashes: Mapped[list[Any]] = mapped_column(JSON)
    created_at: Mapped[datetime]
    last_seen_at: Mapped[datetime] = mapped_column(index=True)
    expires_at: Mapped[datetime] = mapped_column(index=True)


class HubSecretRow(Base):
    """Random keys the hub makes for itself once and every replica shares (e.g. signing login forms)."""

    __tablename__ = "hub_secrets"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    value: Mapped[str] = mapped_column(String(128))
    created_at: Mapped[datetime]
