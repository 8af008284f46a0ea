"""The one home of the benchmarks' statistics: percentiles, medians and ratios.

Every suite reports latencies with :func:`percentile` (nearest rank: the smallest value with at
least ``q`` % of the values at or below it - always a value that was measured, never an
interpolation), central values with :func:`median`, and comparisons with :func:`ratio` (``None``
when either side is missing, so a contender that did not run never yields a verdict).
"""

from __future__ import annotations

import math
import statistics
from typing import Iterable, Sequence

__all__ = ["latency_summary", "median", "percentile", "ratio"]


def percentile(values: Iterable[float], q: float) -> float | None:
    """The ``q``-th percentile (0-100) of ``values`` by nearest rank; None when there are none.

    Raises ``ValueError`` if ``q`` is outside 0..100."""
    if not 0 <= q <= 100:
        raise ValueError(f"percentile {q} is outside 0..100: give a percentage such as 50 or 99")
    ordered = sorted(values)
    if not ordered:
        return None
    rank = max(1, math.ceil(q * len(ordered) / 100))
    return ordered[min(rank, len(ordered)) - 1]


def median(values: Sequence[float]) -> float | None:
    """The median of ``values`` (mean of the two middle ones for an even count); None if empty."""
    return statistics.median(values) if values else None


def ratio(numerator: float | None, denominator: float | None) -> float | None:
    """``numerator / denominator``, or None when either is missing or the denominator is 0."""
    if not isinstance(numerator, (int, float)) or not isinstance(denominator, (int, float)) or not denominator:
        return None
    return numerator / denominator


def latency_summary(values: Sequence[float]) -> dict[str, float | None]:
    """``p50``, ``p90``, ``p99`` and ``max`` of ``values`` (in their unit), None when empty."""
    return {"p50": percentile(values, 50), "p90": percentile(values, 90), "p99": percentile(values, 99),
            "max": max(values) if values else None}
