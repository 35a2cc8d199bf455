"""Continuous percentiles (linear interpolation between the closest ranks), as PostgreSQL's
`percentile_cont` computes them; on SQLite, which has none, from the durations SQL returns."""

from __future__ import annotations

from collections.abc import Sequence

QUANTILES = (0.5, 0.9, 0.99)


def percentile_cont(ordered: Sequence[float], quantile: float) -> float | None:
    """The `quantile` (0..1) of ascending `ordered` values; None for no values."""
    if not ordered:
        return None
    position = quantile * (len(ordered) - 1)
    below = int(position)
    above = min(below + 1, len(ordered) - 1)
    fraction = position - below
    return ordered[below] + (ordered[above] - ordered[below]) * fraction
