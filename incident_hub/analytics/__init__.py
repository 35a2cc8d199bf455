"""Incident analytics: figures computed from the lifecycle timestamps and the durations the transitions
keep. Each report is one module with one entry function taking the database and its parameters, so the
API, a page or a Prometheus collector call the same code. Analytics read; they never write.

`now` (what is broken right now), `response_times` (MTTA, MTTD, MTTR, SLA shares), `reliability`
(availability, downtime, MTBF), `trends` (incidents and MTTR per day or week) and `recurrence`;
`windows`, `percentiles`, `entities`, `sql` and `export` are what they share. See docs/analytics.md.
"""

from __future__ import annotations
