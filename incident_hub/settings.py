"""Every setting the hub reads, from `INCIDENT_HUB_*` environment variables (the only place they are read)."""

from __future__ import annotations

from datetime import timedelta
from functools import lru_cache
from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from incident_hub.model import Severity, SlaPolicy


class Settings(BaseSettings):
    """Hub configuration; see the configuration table in README.md."""

    model_config = SettingsConfigDict(env_prefix="INCIDENT_HUB_", extra="ignore")

    data_dir: Path = Field(default=Path("data"), description="Where the embedded SQLite file lives.")
    database_url: str | None = Field(
        default=None,
        description="SQLAlchemy URL; default sqlite:///<data_dir>/incident-hub.db. "
        "PostgreSQL: postgresql+psycopg://user@host/db",
    )
    host: str = "127.0.0.1"
    port: int = 8080
    log_level: str = "INFO"
    log_json: bool = True
    max_body_bytes: int = Field(default=1024 * 1024, description="Larger request bodies are a 413.")

    sla_ack_minutes: dict[Severity, int] = Field(
        default={
            Severity.SEV1_CRITICAL: 5,
            Severity.SEV2_HIGH: 15,
            Severity.SEV3_MEDIUM: 60,
            Severity.SEV4_LOW: 240,
        }
    )
    sla_resolve_minutes: dict[Severity, int] = Field(
        default={
            Severity.SEV1_CRITICAL: 120,
            Severity.SEV2_HIGH: 240,
            Severity.SEV3_MEDIUM: 1440,
            Severity.SEV4_LOW: 4320,
        }
    )
    sla_check_seconds: float = Field(
        default=15.0, description="How often open incidents are checked for breach."
    )

    analytics_partial_outage_weight: float = Field(
        default=0.5,
        ge=0,
        le=1,
        description="Share of a partial outage's duration that counts as downtime in availability.",
    )
    analytics_degraded_weight: float = Field(
        default=0.25, ge=0, le=1, description="Share of a degraded period's duration that counts as downtime."
    )
    analytics_availability_target: float = Field(
        default=99.0, ge=0, le=100, description="Availability (percent) a service or component should meet."
    )
    analytics_mtta_target_minutes: float = Field(
        default=5.0, gt=0, description="Target mean time to acknowledge."
    )
    analytics_mttd_target_minutes: float = Field(default=2.0, gt=0, description="Target mean time to detect.")
    analytics_mttr_target_minutes: float = Field(
        default=30.0, gt=0, description="Target mean time to resolve."
    )
    analytics_recurrence_target_percent: float = Field(
        default=10.0, ge=0, le=100, description="Target share of incidents that recur within 90 days."
    )

    dispatch_enabled: bool = True
    dispatch_poll_seconds: float = 0.5
    dispatch_batch: int = 50
    dispatch_concurrency: int = 16
    delivery_timeout_seconds: float = 10.0
    delivery_lease_seconds: float = Field(
        default=30.0,
        description="Grace beyond the attempt timeout: a claimed delivery whose process died is claimable "
        "again this long after its attempt's timeout ran out.",
    )
    delivery_max_attempts: int = 8
    delivery_backoff_initial_seconds: float = 0.5
    delivery_backoff_max_seconds: float = 60.0
    delivery_retry_after_max_seconds: float = 300.0

    config: Path | None = Field(
        default=None, description="YAML file with the connectors (see docs/connectors.md)."
    )
    inbox_poll_seconds: float = Field(default=0.5, description="How often stored webhooks are looked for.")
    inbox_appliers: int | None = Field(
        default=None,
        ge=0,
        description="Inbox appliers in this process, each applying a batch at a time; webhooks about one "
        "vendor object stay in order. Default: 4 on PostgreSQL, 1 on SQLite (one writer at a time). "
        "0: this replica only stores webhooks.",
    )
    inbox_batch: int = Field(
        default=20, ge=1, le=500, description="Stored webhooks an applier claims and applies at once."
    )
    retention_rejections_days: float = Field(
        default=30, ge=0, description="Refused webhooks are kept this long for audit (0: forever)."
    )
    retention_inbox_days: float = Field(
        default=14, ge=0, description="Applied inbox rows are kept this long (0: forever)."
    )
    retention_deliveries_days: float = Field(
        default=30,
        ge=0,
        description="Finished deliveries (delivered or discarded) and their attempts are kept this long "
        "(0: forever).",
    )
    webhook_max_age_hours: float = Field(
        default=48.0, description="Webhooks whose vendor time is older are refused as stale replays."
    )
    connector_failure_threshold: int = Field(
        default=5, description="Failed pushes in a row that pause a connector (circuit breaker)."
    )
    connector_cool_down_seconds: float = Field(
        default=300.0, description="How long a paused connector waits before it is tried again."
    )

    reconcile_enabled: bool = Field(
        default=True, description="Run the reconciler in `serve` (see docs/reconciliation.md)."
    )
    reconcile_interval_seconds: float = Field(
        default=60.0,
        gt=0,
        description="Incremental pass per connector this often; replicas not holding the reconciler's "
        "lock (PostgreSQL) try to take it this often.",
    )
    reconcile_full_minutes: float = Field(
        default=60.0, gt=0, description="Full sweep of the links of incidents not CLOSED this often."
    )
    reconcile_overlap_seconds: float = Field(
        default=120.0,
        ge=0,
        description="An incremental pass asks for objects changed since its watermark minus this "
        "(vendor clocks may run behind ours).",
    )
    reconcile_first_lookback_minutes: float = Field(
        default=60.0,
        ge=0,
        description="A connector's first incremental pass looks back this far; older objects are "
        "brought in by `incident-hub backfill`.",
    )
    reconcile_rate_fraction: float = Field(
        default=0.2,
        gt=0,
        le=1,
        description="Share of a connector's `rate_limit_per_second` the reconciler and backfill may use, "
        "on a budget of their own, so deliveries are never starved.",
    )
    reconcile_page_size: int = Field(
        default=100, ge=1, le=1000, description="Links read per database page in a full sweep."
    )

    auth_failure_burst: int = Field(
        default=10,
        ge=1,
        description="Failed authentications (bad API keys, refused admin logins) one client address may "
        "make before it is answered 429.",
    )
    auth_failure_refill_per_second: float = Field(
        default=0.5, gt=0, description="How fast a throttled address earns another attempt."
    )
    api_key_cache_seconds: float = Field(
        default=30.0, description="How long a verified API key is trusted before it is checked again."
    )

    def resolved_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite:///{(self.data_dir / 'incident-hub.db').resolve()}"

    def resolved_inbox_appliers(self) -> int:
        if self.inbox_appliers is not None:
            return self.inbox_appliers
        return 1 if self.resolved_database_url().startswith("sqlite") else 4

    def sla_policy(self) -> SlaPolicy:
        return SlaPolicy(
            acknowledge={s: timedelta(minutes=m) for s, m in self.sla_ack_minutes.items()},
            resolve={s: timedelta(minutes=m) for s, m in self.sla_resolve_minutes.items()},
        )


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()
