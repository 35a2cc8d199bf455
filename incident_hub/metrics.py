"""Prometheus metrics. Outbox figures are read from the database at scrape time, so every replica
reports the shared truth. Under `serve --workers N` the in-process counters run in prometheus_client's
multiprocess mode: each worker writes its own files and `/metrics`, whichever worker answers, sums them."""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest, multiprocess
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector
from sqlalchemy import func, select

from incident_hub.analytics.reports import Analytics
from incident_hub.clock import utcnow
from incident_hub.model import Severity
from incident_hub.store.db import Database
from incident_hub.store.tables import DeliveryRow, DuplicateRow

REGISTRY = CollectorRegistry(auto_describe=True)

HTTP_REQUESTS = Counter(
    "incident_hub_http_requests_total", "API requests", ["method", "route", "status"], registry=REGISTRY
)
HTTP_LATENCY = Histogram(
    "incident_hub_http_request_duration_seconds",
    "API request latency",
    ["method", "route"],
    registry=REGISTRY,
    buckets=(0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0),
)
EVENTS = Counter("incident_hub_events_total", "Domain events written", ["type"], registry=REGISTRY)
DELIVERY_ATTEMPTS = Counter(
    "incident_hub_delivery_attempts_total",
    "Delivery attempts by result",
    ["target_kind", "result"],
    registry=REGISTRY,
)
DELIVERY_OUTCOMES = Counter(
    "incident_hub_delivery_outcomes_total",
    "Deliveries finished, by final state",
    ["target_kind", "state"],
    registry=REGISTRY,
)
RATE_LIMIT_PAUSES = Counter(
    "incident_hub_rate_limit_pauses_total",
    "Pauses of a connector's vendor calls after the vendor answered 429 (overlapping 429s: one pause)",
    ["connector"],
    registry=REGISTRY,
)

RECONCILE_RUNS = Counter(
    "incident_hub_reconcile_runs_total",
    "Reconciliation passes finished, by outcome (ok, partial, failed, interrupted)",
    ["connector", "kind", "outcome"],
    registry=REGISTRY,
)
RECONCILE_DRIFT_REPAIRED = Counter(
    "incident_hub_reconcile_drift_repaired_total",
    "Vendor objects whose drift a reconciliation pass repaired",
    ["connector", "kind"],
    registry=REGISTRY,
)
RECONCILE_DURATION = Histogram(
    "incident_hub_reconcile_duration_seconds",
    "Duration of reconciliation passes",
    ["connector", "kind"],
    registry=REGISTRY,
    buckets=(0.1, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 900.0),
)


class OutboxCollector(Collector):
    """Deliveries by state, the dispatcher's lag (age of the oldest due, undelivered delivery), the
    deliveries in doubt, and the vendor duplicates recorded per connector."""

    def __init__(self, db: Database) -> None:
        self.db = db

    def collect(self) -> Iterator[GaugeMetricFamily]:
        by_state = GaugeMetricFamily("incident_hub_deliveries", "Deliveries by state", labels=["state"])
        lag = GaugeMetricFamily(
            "incident_hub_dispatcher_lag_seconds", "Age of the oldest pending delivery that is due"
        )
        doubt = GaugeMetricFamily(
            "incident_hub_deliveries_in_doubt",
            "Pending deliveries whose create had an unknown outcome, still looking for the object",
        )
        duplicates = GaugeMetricFamily(
            "incident_hub_vendor_duplicates",
            "Vendor objects recorded as duplicates of a linked one (never written by the hub)",
            labels=["connector"],
        )
        now = utcnow()
        with self.db.read() as session:
            for state, count in session.execute(
                select(DeliveryRow.state, func.count()).group_by(DeliveryRow.state)
            ):
                by_state.add_metric([state], count)
            in_doubt = session.scalar(
                select(func.count()).where(
                    DeliveryRow.state == "pending",
                    DeliveryRow.in_doubt_since.is_not(None),
                    DeliveryRow.in_doubt_outcome.is_(None),
                )
            )
            for connector_id, count in session.execute(
                select(DuplicateRow.connector_id, func.count()).group_by(DuplicateRow.connector_id)
            ):
                duplicates.add_metric([connector_id], count)
            oldest = session.scalar(
                select(func.min(DeliveryRow.next_attempt_at)).where(
                    DeliveryRow.state == "pending", DeliveryRow.next_attempt_at <= now
                )
            )
        lag.add_metric([], max(0.0, (now - oldest).total_seconds()) if oldest is not None else 0.0)
        doubt.add_metric([], in_doubt or 0)
        yield by_state
        yield lag
        yield doubt
        yield duplicates


class AnalyticsCollector(Collector):
    """The headline figures, read from the analytics reports at scrape time: active incidents by
    severity, and the mean times to detect, acknowledge and resolve of the last 7 days' incidents."""

    def __init__(self, analytics: Analytics) -> None:
        self.analytics = analytics

    def collect(self) -> Iterator[GaugeMetricFamily]:
        active = GaugeMetricFamily(
            "incident_hub_incidents_active", "Incidents not resolved, by severity", labels=["severity"]
        )
        now = self.analytics.now()
        counts = {c.key: c.count for c in now.by_severity}
        for severity in Severity:
            active.add_metric([severity.value], counts.get(severity.value, 0))
        yield active
        overall = self.analytics.response_times().overall
        for name, figure in (("mttd", overall.mttd), ("mtta", overall.mtta), ("mttr", overall.mttr)):
            gauge = GaugeMetricFamily(
                f"incident_hub_incidents_{name}_seconds",
                f"{name.upper()} (mean) of the incidents detected in the last 7 days; absent without any",
            )
            if figure.mean_seconds is not None:
                gauge.add_metric([], figure.mean_seconds)
            yield gauge


# prometheus_client's own variable, read by the library when it is imported: it is not a hub setting.
MULTIPROCESS_ENV = "PROMETHEUS_MULTIPROC_DIR"


def multiprocess_dir() -> str | None:
    """The directory the workers' metric files live in, when this process counts in multiprocess mode."""
    return os.environ.get(MULTIPROCESS_ENV) or None


@contextlib.contextmanager
def multiprocess_metrics() -> Iterator[Path]:
    """Put the worker processes started inside the block in multiprocess mode, on an empty directory.

    A directory the operator named in PROMETHEUS_MULTIPROC_DIR is emptied of metric files at start (the
    counts of a previous run would add up with this one's); otherwise a fresh one is made and removed."""
    given = multiprocess_dir()
    if given is not None:
        directory = Path(given)
        directory.mkdir(parents=True, exist_ok=True)
        for stale in directory.glob("*.db"):
            if not stale.stem.endswith(f"_{os.getpid()}"):  # this process's own files are live
                stale.unlink()
        yield directory
        return
    directory = Path(tempfile.mkdtemp(prefix="incident-hub-metrics-"))
    os.environ[MULTIPROCESS_ENV] = str(directory)
    try:
        yield directory
    finally:
        del os.environ[MULTIPROCESS_ENV]
        shutil.rmtree(directory, ignore_errors=True)


def exposition(*registries: CollectorRegistry) -> bytes:
    """The text `/metrics` answers: this process's counters (every worker's, in multiprocess mode), then
    `registries` (collectors that read the database, the same in every worker)."""
    if multiprocess_dir() is None:
        body = generate_latest(REGISTRY)
    else:
        merged = CollectorRegistry()
        multiprocess.MultiProcessCollector(merged)  # type: ignore[no-untyped-call]
        body = generate_latest(merged)
    return body + b"".join(generate_latest(registry) for registry in registries)


def process_exiting() -> None:
    """Drop this worker's live gauges from the shared files (its counters stay: totals never go back)."""
    directory = multiprocess_dir()
    if directory is not None:
        multiprocess.mark_process_dead(os.getpid(), directory)  # type: ignore[no-untyped-call]
