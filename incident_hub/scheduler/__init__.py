"""Reconciliation: the scheduler that catches what webhooks missed, its leader lock, and backfill.

Every difference found enters the sync road at `Applier.apply`, exactly as a webhook does (see
docs/reconciliation.md).
"""
