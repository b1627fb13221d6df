"""The statistics of a prepared dataset: what its dataset card is drawn from (`tasks.data.card`) and,
with each token-length histogram as its summary and its non-empty bins, its `validation_report.json`.
Counts only, never row text.
"""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime
from typing import Any

import numpy as np

from tasks.contracts.prepare import PrepareSpec
from tasks.data.length_stats import LengthHistogram
from tasks.data.parts import Part, ratios
from tasks.data.row_plan import RowPlan


def dataset_format(formats: list[str]) -> str:
    """The format recorded for the dataset: its sources' one format, or `mixed`."""
    return formats[0] if len(set(formats)) == 1 else "mixed"


def _length_stats(plan: RowPlan, sample_every: int) -> dict[str, dict[str, Any]]:
    names = list(plan.scans[0].lengths) if plan.scans else []
    out = {}
    for name in names:
        histogram = LengthHistogram()
        for scan in plan.scans:
            window = plan.window(scan)
            sampled = plan.keys[window] % np.uint64(sample_every) == 0
            histogram.add(scan.lengths[name][plan.alive[window] & sampled])
        out[name] = histogram.to_dict()
    return out


def dataset_stats(
    job: PrepareSpec,
    parts: list[Part],
    formats: list[str],
    kind: str,
    plan: RowPlan,
    counts: dict[str, int],
    reasons: Counter,
    total: int,
    sample_every: int,
) -> dict[str, Any]:
    """The card's `stats` (see `tasks.data.card`), token lengths as full histograms."""
    dataset = job.dataset
    pii: Counter = Counter()
    per_source = [{"rows_in": 0} for _ in parts]
    for scan in plan.scans:
        pii.update(scan.pii)
        per_source[scan.source]["rows_in"] += scan.rows_in
    return {
        "name": dataset.name,
        "version": job.version,
        "format": dataset_format(formats),
        "kind": kind,
        "sources": [
            {
                "uri": part.source.uri,
                "fingerprint": part.source.fingerprint,
                "rows_in": info["rows_in"],
                "weight": part.weight,
                "format": fmt,
                "role": part.role,
            }
            for part, fmt, info in zip(parts, formats, per_source, strict=True)
        ],
        "counts": counts,
        "rows_in": total,
        "rows_kept": int(plan.alive.sum()),
        "rows_dropped": sum(reasons.values()),
        "drop_reasons": dict(reasons.most_common()),
        "pii": dict(pii),
        "pii_mode": dataset.pii,
        "settings": {
            "split": "pre-split" if dataset.presplit else ",".join(map(str, ratios(job))),
            "role": job.role,
            "seed": dataset.seed,
            "min_tokens": dataset.min_tokens,
            "max_tokens": dataset.max_tokens,
            "dedup": dataset.dedup,
            **({"near_dedup_threshold": dataset.near_dedup_threshold} if dataset.dedup == "near" else {}),
            "decontaminate_ngram": dataset.decontaminate_ngram,
            "filters": dataset.filters,
            "tokenizers": [entry.name for entry in job.tokenizers],
        },
        "token_lengths": _length_stats(plan, sample_every),
        "token_lengths_sample": f"1 in {sample_every} rows, chosen by content hash"
        if sample_every > 1
        else "all rows",
        "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
    }


def validation_report(stats: dict[str, Any]) -> dict[str, Any]:
    """The stats with each tokenizer's histogram replaced by its summary and, next to it, `bins`: the
    non-empty bins as `[lower edge, upper edge (exclusive), rows]`, what the card's picture is drawn from,
    so a page can draw the histogram itself."""
    lengths = {}
    for name, data in stats["token_lengths"].items():
        histogram = LengthHistogram.from_dict(data)
        lengths[name] = {**histogram.summary(), "bins": [list(b) for b in histogram.bins()]}
    return {k: v for k, v in stats.items() if k != "token_lengths"} | {"token_lengths": lengths}
