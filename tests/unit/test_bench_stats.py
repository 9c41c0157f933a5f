"""Percentiles and summaries of the benchmark (nearest rank: every reported value was observed)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gochat_py.bench.stats import cdf_sample, percentile, rate, summarize


def test_percentile_nearest_rank() -> None:
    values = list(range(1, 101))  # 1..100
    assert percentile(values, 50) == 50
    assert percentile(values, 99) == 99
    assert percentile(values, 100) == 100
    assert percentile(values, 0) == 1
    assert percentile(values, 99.9) == 100


def test_percentile_small_and_empty() -> None:
    assert percentile([], 50) is None
    assert percentile([7], 1) == 7
    assert percentile([7], 99) == 7
    assert percentile([1, 2], 50) == 1
    assert percentile([1, 2], 51) == 2


def test_percentile_rejects_out_of_range() -> None:
    with pytest.raises(ValueError):
        percentile([1], 101)
    with pytest.raises(ValueError):
        percentile([1], -1)


@given(st.lists(st.integers(min_value=0, max_value=10**9), min_size=1, max_size=300), st.floats(0, 100))
def test_percentile_is_an_observed_value_with_enough_below(values: list[int], q: float) -> None:
    values.sort()
    p = percentile(values, q)
    assert p in values
    assert sum(v <= p for v in values) >= q / 100 * len(values)


def test_summarize_scales_to_milliseconds() -> None:
    microseconds = sorted([1000, 2000, 3000, 4000, 100_000])
    s = summarize(microseconds, 1000)
    assert s == {
        "count": 5,
        "mean": 22.0,
        "min": 1.0,
        "p50": 3.0,
        "p90": 100.0,
        "p99": 100.0,
        "p999": 100.0,
        "max": 100.0,
    }
    assert summarize([], 1000)["p99"] is None


def test_cdf_sample_endpoints_and_monotonic() -> None:
    values = list(range(1000))
    sample = cdf_sample(values, 11)
    assert len(sample) == 11
    assert sample[0] == 0 and sample[-1] == 999
    assert sample == sorted(sample)
    assert cdf_sample([], 11) == []


def test_rate() -> None:
    assert rate(1000, 2.0) == 500.0
    assert rate(5, 0) is None
