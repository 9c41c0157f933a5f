"""Pure statistics for the summary: percentiles, latency summaries, a CDF sample."""

from __future__ import annotations

import math
from collections.abc import Sequence

NS_PER_MS = 1_000_000


def percentile(sorted_values: Sequence[float], q: float) -> float | None:
    """The ``q``-th percentile (0..100) of already sorted values, nearest-rank; None when empty.

    Nearest rank: the smallest value with at least q% of the values at or below it, so p100 is the
    maximum, p0 the minimum, and a reported p99 is always a value that was really observed.
    """
    if not 0 <= q <= 100:
        raise ValueError(f"percentile must be within 0..100, got {q}")
    n = len(sorted_values)
    if n == 0:
        return None
    rank = max(1, math.ceil(q / 100 * n))
    return sorted_values[rank - 1]


def summarize(sorted_values: Sequence[float], scale: float = 1.0, digits: int = 3) -> dict[str, float | int | None]:
    """count, mean, p50, p90, p99, p99.9 and max of sorted values, each divided by ``scale``."""

    def scaled(value: float | None) -> float | None:
        return None if value is None else round(value / scale, digits)

    n = len(sorted_values)
    return {
        "count": n,
        "mean": scaled(sum(sorted_values) / n) if n else None,
        "min": scaled(sorted_values[0]) if n else None,
        "p50": scaled(percentile(sorted_values, 50)),
        "p90": scaled(percentile(sorted_values, 90)),
        "p99": scaled(percentile(sorted_values, 99)),
        "p999": scaled(percentile(sorted_values, 99.9)),
        "max": scaled(sorted_values[-1]) if n else None,
    }


def cdf_sample(sorted_values: Sequence[float], points: int = 201, scale: float = 1.0, digits: int = 3) -> list[float]:
    """Values at ``points`` evenly spaced quantiles from 0 to 1 (the CDF, kept small for the JSON)."""
    n = len(sorted_values)
    if n == 0 or points < 2:
        return []
    out = []
    for i in range(points):
        rank = min(n - 1, round(i / (points - 1) * (n - 1)))
        out.append(round(sorted_values[rank] / scale, digits))
    return out


def rate(count: int, seconds: float) -> float | None:
    return round(count / seconds, 1) if seconds > 0 else None
