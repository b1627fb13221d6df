"""A mergeable streaming histogram of token lengths.

Token lengths are counted in several worker processes, one tokenizer each, over rows that never fit in
memory at once. Every `LengthHistogram` uses the same fixed integer bin edges, so histograms built in
different workers (or over different chunks) merge exactly by adding their bin counts, and the merged
histogram is identical to one built over the concatenated lengths.

Bins: one per length 0, 1, ..., 16 (exact), then quarter-octave bins from 17 whose further lower edges
are ceil(2 ** (k / 4)) for k = 17, 18, ... below 1 << 20, then one overflow bin for everything from
1 << 20 up. Quantiles are read from the bins (the largest length the bin holding the q-th value can
hold, clamped to the observed min and max), so they are exact below 17 and within one bin (about 19%)
above. `count`, `total`, `min` and `max` are exact.

The JSON form (`to_dict`) keeps only non-empty bins, by their lower edge:
    {"scheme": "int16-q4-2^20", "count": int, "total": int, "min": int | None, "max": int | None,
     "bins": [[lower_edge, count], ...]}
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

SCHEME = "int16-q4-2^20"
LINEAR_TOP = 16  # lengths up to here get a bin each: short rows are where min_tokens cut-offs bite
TOP = 1 << 20


def _edges() -> np.ndarray:
    """Lower edges of every bin, the last being the overflow bin's."""
    edges = list(range(LINEAR_TOP + 2))
    k = 4 * int(math.log2(LINEAR_TOP)) + 1
    while 2 ** (k / 4) < TOP:
        edge = math.ceil(2 ** (k / 4))
        if edge > edges[-1]:
            edges.append(edge)
        k += 1
    edges.append(TOP)
    return np.asarray(edges, dtype=np.int64)


EDGES = _edges()
_EDGE_INDEX = {int(edge): i for i, edge in enumerate(EDGES)}


def _whole_floats(arr: np.ndarray) -> bool:
    # Floats are accepted only when they hold whole numbers; silently truncating 1.5 would lie.
    return arr.dtype.kind == "f" and bool(np.all(np.isfinite(arr)) and np.all(arr == np.floor(arr)))


def _as_lengths(lengths: np.ndarray | list[int]) -> np.ndarray:
    arr = np.asarray(lengths).ravel()
    if arr.size == 0:
        return arr.astype(np.int64)
    if arr.dtype.kind not in "iu" and not _whole_floats(arr):
        raise TypeError(f"token lengths must be integers, got {arr.dtype}")
    arr = arr.astype(np.int64)
    if arr.min() < 0:
        raise ValueError("token lengths must not be negative")
    return arr


class LengthHistogram:
    """Counts of token lengths in fixed bins; picklable, mergeable and JSON round-trippable."""

    def __init__(self) -> None:
        self.counts = np.zeros(len(EDGES), dtype=np.int64)
        self.count = 0
        self.total = 0
        self.min: int | None = None
        self.max: int | None = None

    # -- building -----------------------------------------------------------------------------------

    def add(self, lengths: np.ndarray | list[int]) -> None:
        """Add a batch of lengths (any iterable numpy can turn into an integer array)."""
        arr = _as_lengths(lengths)
        if arr.size == 0:
            return
        bins = np.searchsorted(EDGES, arr, side="right") - 1
        self.counts += np.bincount(bins, minlength=len(EDGES))
        self.count += int(arr.size)
        self.total += int(arr.sum())
        self._extend(int(arr.min()), int(arr.max()))

    def merge(self, other: LengthHistogram) -> LengthHistogram:
        """Add `other`'s counts into this histogram; returns self so merges chain."""
        if not isinstance(other, LengthHistogram):
            raise TypeError(f"cannot merge a {type(other).__name__} into a LengthHistogram")
        self.counts += other.counts
        self.count += other.count
        self.total += other.total
        if other.count:
            self._extend(other.min, other.max)
        return self

    def _extend(self, low: int | None, high: int | None) -> None:
        if low is not None:
            self.min = low if self.min is None else min(self.min, low)
        if high is not None:
            self.max = high if self.max is None else max(self.max, high)

    # -- reading ------------------------------------------------------------------------------------

    def bins(self) -> list[tuple[int, int, int]]:
        """(lower edge, upper edge exclusive, count) of the non-empty bins; the overflow bin ends past max."""
        out = []
        for i in np.flatnonzero(self.counts):
            low = int(EDGES[i])
            high = int(EDGES[i + 1]) if i + 1 < len(EDGES) else max(TOP + 1, (self.max or TOP) + 1)
            out.append((low, high, int(self.counts[i])))
        return out

    def quantile(self, q: float) -> int:
        """The q-th length by the nearest-rank rule, read from the bins.

        The answer is the largest length the bin holding the ceil(q * count)-th smallest value can hold,
        clamped to [min, max]: exact for lengths up to 16 and never more than one bin too high above."""
        if not 0.0 <= q <= 1.0:
            raise ValueError(f"quantile q must be within [0, 1], got {q}")
        if not self.count:
            raise ValueError("quantile of an empty histogram")
        rank = min(max(math.ceil(q * self.count), 1), self.count)
        index = int(np.searchsorted(np.cumsum(self.counts), rank, side="left"))
        upper = int(EDGES[index + 1]) - 1 if index + 1 < len(EDGES) else self.max
        assert self.min is not None and self.max is not None and upper is not None
        return min(max(upper, self.min), self.max)

    @property
    def mean(self) -> float | None:
        return self.total / self.count if self.count else None

    def summary(self) -> dict[str, Any]:
        """{"count", "mean", "min", "p50", "p90", "p99", "max"}; all but count are None when empty."""
        if not self.count:
            return {"count": 0, "mean": None, "min": None, "p50": None, "p90": None, "p99": None, "max": None}
        return {
            "count": self.count,
            "mean": round(self.total / self.count, 2),
            "min": self.min,
            "p50": self.quantile(0.5),
            "p90": self.quantile(0.9),
            "p99": self.quantile(0.99),
            "max": self.max,
        }

    # -- serialisation ------------------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        return {
            "scheme": SCHEME,
            "count": self.count,
            "total": self.total,
            "min": self.min,
            "max": self.max,
            "bins": [[int(EDGES[i]), int(self.counts[i])] for i in np.flatnonzero(self.counts)],
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> LengthHistogram:
        if d.get("scheme", SCHEME) != SCHEME:
            # Different edges cannot be merged exactly; refuse rather than re-bin approximately.
            raise ValueError(f"length histogram scheme {d.get('scheme')!r} is not {SCHEME!r}")
        hist = cls()
        for edge, count in d.get("bins") or []:
            if int(edge) not in _EDGE_INDEX:
                raise ValueError(f"length histogram bin edge {edge} is not an edge of {SCHEME}")
            hist.counts[_EDGE_INDEX[int(edge)]] += int(count)
        hist.count = int(d.get("count", int(hist.counts.sum())))
        if hist.count != int(hist.counts.sum()):
            raise ValueError(f"length histogram count {hist.count} does not match its bins")
        hist.total = int(d.get("total", 0))
        hist.min = None if d.get("min") is None else int(d["min"])
        hist.max = None if d.get("max") is None else int(d["max"])
        return hist

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, LengthHistogram):
            return NotImplemented
        return np.array_equal(self.counts, other.counts) and (self.count, self.total, self.min, self.max) == (
            other.count,
            other.total,
            other.min,
            other.max,
        )

    __hash__ = None  # type: ignore[assignment]  # mutable

    def __repr__(self) -> str:
        return f"LengthHistogram(count={self.count}, min={self.min}, max={self.max}, total={self.total})"
