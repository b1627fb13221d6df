"""LengthHistogram: exact merges across workers, quantiles from fixed bins, JSON and pickle round trips."""

from __future__ import annotations

import json
import pickle

import numpy as np
import pytest

from tasks.data.length_stats import EDGES, TOP, LengthHistogram


def _hist(lengths) -> LengthHistogram:
    hist = LengthHistogram()
    hist.add(lengths)
    return hist


def _exact(lengths: np.ndarray, q: float) -> int:
    # Nearest rank, the rule LengthHistogram.quantile follows.
    return int(np.quantile(lengths, q, method="inverted_cdf"))


@pytest.fixture
def lengths() -> np.ndarray:
    rng = np.random.default_rng(7)
    return np.concatenate(
        [rng.integers(0, 17, 300), rng.lognormal(6, 1.5, 5000).astype(np.int64), [TOP + 5, 3 * TOP]]
    )


def test_edges_are_fixed_increasing_integers():
    assert EDGES.dtype == np.int64
    assert list(EDGES[:18]) == list(range(18))
    assert np.all(np.diff(EDGES) > 0)
    assert EDGES[-1] == TOP == 1 << 20
    ratios = EDGES[18:] / EDGES[17:-1]
    assert ratios.max() < 1.25  # quarter-octave bins, rounded to integers


def test_merge_equals_histogram_of_concatenation(lengths):
    parts = np.array_split(lengths, 5)
    workers = [_hist(part) for part in parts]
    merged = LengthHistogram()
    for worker in workers:
        assert merged.merge(worker) is merged
    whole = _hist(lengths)
    assert merged == whole
    assert np.array_equal(merged.counts, whole.counts)
    assert merged.count == len(lengths)
    assert merged.total == int(lengths.sum())
    assert (merged.min, merged.max) == (int(lengths.min()), int(lengths.max()))
    assert merged.summary() == whole.summary()


def test_merge_with_empty_keeps_min_max():
    hist = _hist([5, 9])
    hist.merge(LengthHistogram())
    assert (hist.count, hist.min, hist.max) == (2, 5, 9)
    empty = LengthHistogram().merge(hist)
    assert empty == hist


def test_add_accepts_lists_and_arrays_in_batches():
    a = LengthHistogram()
    a.add([3, 4])
    a.add(np.array([100, 2000], dtype=np.int32))
    a.add([])
    a.add(np.array([7.0]))  # whole floats are fine
    assert a == _hist([3, 4, 100, 2000, 7])


@pytest.mark.parametrize("bad", [[-1], [1.5], [float("nan")]])
def test_add_rejects_negative_or_fractional(bad):
    with pytest.raises((ValueError, TypeError)):
        LengthHistogram().add(bad)


def test_quantiles_exact_for_small_values():
    rng = np.random.default_rng(1)
    lengths = rng.integers(0, 17, 1001)
    hist = _hist(lengths)
    for q in (0.0, 0.01, 0.1, 0.25, 0.5, 0.9, 0.99, 1.0):
        assert hist.quantile(q) == _exact(lengths, q), q
    assert hist.quantile(0.0) == lengths.min()
    assert hist.quantile(1.0) == lengths.max()


def test_quantiles_within_one_bin_for_large_values(lengths):
    hist = _hist(lengths)
    for q in (0.05, 0.5, 0.9, 0.99, 0.999, 1.0):
        exact = _exact(lengths, q)
        approx = hist.quantile(q)
        bin_index = np.searchsorted(EDGES, exact, side="right") - 1
        assert EDGES[bin_index] <= exact <= approx, q
        upper = EDGES[bin_index + 1] if bin_index + 1 < len(EDGES) else hist.max
        assert approx <= upper, q
        assert approx <= hist.max


def test_single_value_quantiles_are_the_value():
    hist = _hist([12345] * 3)
    assert hist.quantile(0.5) == hist.quantile(0.99) == 12345  # clamped to min/max


def test_quantile_rejects_bad_q_and_empty():
    with pytest.raises(ValueError):
        _hist([1]).quantile(1.5)
    with pytest.raises(ValueError):
        LengthHistogram().quantile(0.5)


def test_summary_is_json_ready(lengths):
    summary = _hist(lengths).summary()
    assert set(summary) == {"count", "mean", "min", "p50", "p90", "p99", "max"}
    assert json.loads(json.dumps(summary)) == summary
    assert all(type(v) is int for k, v in summary.items() if k != "mean")
    assert isinstance(summary["mean"], float)
    assert summary["min"] <= summary["p50"] <= summary["p90"] <= summary["p99"] <= summary["max"]
    assert summary["mean"] == pytest.approx(lengths.mean(), abs=0.01)


def test_empty_summary_is_sane():
    hist = LengthHistogram()
    summary = hist.summary()
    assert summary == {
        "count": 0,
        "mean": None,
        "min": None,
        "p50": None,
        "p90": None,
        "p99": None,
        "max": None,
    }
    assert json.dumps(summary)
    assert (hist.count, hist.total, hist.min, hist.max, hist.mean) == (0, 0, None, None, None)
    assert LengthHistogram.from_dict(json.loads(json.dumps(hist.to_dict()))) == hist


def test_json_round_trip(lengths):
    hist = _hist(lengths)
    data = json.loads(json.dumps(hist.to_dict()))
    back = LengthHistogram.from_dict(data)
    assert back == hist
    assert back.summary() == hist.summary()
    assert len(data["bins"]) == int(np.count_nonzero(hist.counts))  # sparse: only non-empty bins
    # A histogram read back still merges with fresh ones.
    back.merge(_hist([1, 2, 3]))
    assert back.count == hist.count + 3


def test_from_dict_rejects_foreign_bins():
    with pytest.raises(ValueError):
        LengthHistogram.from_dict({"scheme": "other", "bins": []})
    with pytest.raises(ValueError):
        LengthHistogram.from_dict({"count": 1, "bins": [[18, 1]]})  # 18 is not an edge
    with pytest.raises(ValueError):
        LengthHistogram.from_dict({"count": 5, "bins": [[3, 1]]})


def test_pickles(lengths):
    hist = _hist(lengths)
    assert pickle.loads(pickle.dumps(hist)) == hist
