"""One prepared dataset version as its page shows it: the card, rows per split, the token-length
summary and picture, the drop reasons with counts, and the first page of rejected rows (id and reason).

What is recorded, and where (all written by the prepare step, counts only): `validation_report.json`
(counts, drop reasons, sources, settings and each tokenizer's token-length summary: count, mean, min,
p50, p90, p99, max, and its histogram's non-empty `bins`), `README.md` (the card), `token_lengths.png`
(the histogram drawn by `tasks.data.card`). The page draws the histogram from the bins; versions
prepared before the report kept them have only the picture, which is served as it is.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field

from tasks.console.dataset_rows import OpenedRow, RejectedPage, open_row, rejected_page
from tasks.console.datasets import PreparedVersion, known, prepared_version
from tasks.console.reading import read_bytes
from tasks.data import dataset_registry
from tasks.storage import layout, store

CARD = "README.md"
PNG = "token_lengths.png"


class TokenLengths(BaseModel):
    """One tokenizer's token lengths over the kept rows."""

    tokenizer: str = Field(description="The tokenizer's name (a base model's).")
    count: int | None = Field(None, description="Rows counted.")
    mean: float | None = Field(None, description="Mean length.")
    min: int | None = Field(None, description="Shortest.")
    p50: int | None = Field(None, description="Median.")
    p90: int | None = Field(None, description="90th percentile.")
    p99: int | None = Field(None, description="99th percentile.")
    max: int | None = Field(None, description="Longest.")


class DropReason(BaseModel):
    """How many rows were dropped for one reason."""

    reason: str = Field(description="The reason code (too_long, duplicate, filter:<name>, ...).")
    count: int = Field(description="Rows dropped for it.")


class DatasetVersionPage(BaseModel):
    """One prepared version of a dataset."""

    name: str = Field(description="The dataset's name.")
    summary: PreparedVersion = Field(description="Its state, when, rows per split and rows dropped.")
    format: str | None = Field(None, description="The source row format.")
    kind: str | None = Field(None, description="chat, text or preference.")
    rows_in: int | None = Field(None, description="Rows read from every source.")
    sources: list[str] = Field(default_factory=list, description="The sources' URIs, by index.")
    settings: dict[str, Any] = Field(default_factory=dict, description="The settings it was prepared with.")
    drop_reasons: list[DropReason] = Field(default_factory=list, description="Rows dropped per reason.")
    token_lengths: list[TokenLengths] = Field(default_factory=list, description="Per tokenizer.")
    token_lengths_sample: str | None = Field(None, description="Which rows the lengths were counted on.")
    token_length_chart: dict[str, Any] | None = Field(
        None, description="Rows per token-length bin per tokenizer, a bar chart spec (static/tunerflow.js)."
    )
    has_histogram: bool = Field(False, description="The token-length picture exists.")
    show_picture: bool = Field(False, description="Show the picture: it exists and no bins were kept.")
    card: str | None = Field(None, description="The card (README.md) as text.")
    rejected: RejectedPage = Field(description="One page of the rejected rows (id and reason).")


def find_version(root: str, name: str, version: str) -> PreparedVersion | None:
    """A version the store lists for `name`; None for any other name or version."""
    if not known(root, name):
        return None
    for entry in dataset_registry.prepared_versions(root, name):
        if entry["version"] == version:
            return prepared_version(entry)
    return None


def _file(root: str, name: str, version: str, filename: str) -> bytes | None:
    return read_bytes(store.join(layout.dataset_version(root, name, version), filename))


def token_lengths_png(root: str, name: str, version: str) -> bytes | None:
    """The token-length histogram picture of a listed version, if it was drawn."""
    return _file(root, name, version, PNG) if find_version(root, name, version) else None


def _sources(report: dict[str, Any]) -> list[str]:
    return [str(source.get("uri")) for source in report.get("sources") or []]


def _lengths(report: dict[str, Any]) -> list[TokenLengths]:
    found = report.get("token_lengths") or {}
    return [
        TokenLengths(tokenizer=tokenizer, **{k: v for k, v in summary.items() if k != "bins"})
        for tokenizer, summary in sorted(found.items())
    ]


def _bin_label(low: int, high: int) -> str:
    return str(low) if high - low == 1 else f"{low}–{high - 1}"


def _chart(report: dict[str, Any]) -> dict[str, Any] | None:
    """Rows per bin (`[lower, upper exclusive, rows]`, see `tasks.data.prep_report`) for each tokenizer
    that kept them; None when none did."""
    found = report.get("token_lengths") or {}
    series = {name: found[name]["bins"] for name in sorted(found) if (found[name] or {}).get("bins")}
    if not series:
        return None
    upper: dict[int, int] = {}
    for bins in series.values():
        for low, high, _ in bins:
            upper.setdefault(int(low), int(high))
    spans: list[tuple[int, int]] = []
    for low in sorted(upper):
        if spans and spans[-1][1] < low:
            # Bins nobody filled are one empty bar, so a gap in the lengths stays visible.
            spans.append((spans[-1][1], low))
        spans.append((low, upper[low]))
    counts = {name: {int(low): int(rows) for low, _, rows in bins} for name, bins in series.items()}
    return {
        "kind": "bar",
        "title": "rows per token length",
        "labels": [_bin_label(low, high) for low, high in spans],
        "y": "rows",
        "series": [
            {"label": name, "values": [rows.get(low, 0) for low, _ in spans]} for name, rows in counts.items()
        ],
    }


def dataset_version(
    root: str, name: str, version: str, page: int = 1, reason: str | None = None
) -> DatasetVersionPage | None:
    """The page of one version with page `page` of its rejected rows (of `reason` only, if given);
    None when the store does not list the version."""
    summary = find_version(root, name, version)
    if summary is None:
        return None
    report = dataset_registry.validation_report(root, name, version) or {}
    card = _file(root, name, version, CARD)
    reasons = report.get("drop_reasons") or {}
    chart = _chart(report)
    picture = store.exists(store.join(layout.dataset_version(root, name, version), PNG))
    if not summary.counts:
        # A failed preparation commits no result, yet its report still says what it counted.
        summary = summary.model_copy(update={"counts": report.get("counts") or {}})
    return DatasetVersionPage(
        name=name,
        summary=summary,
        format=report.get("format"),
        kind=report.get("kind"),
        rows_in=report.get("rows_in"),
        sources=_sources(report),
        settings=report.get("settings") or {},
        drop_reasons=[
            DropReason(reason=code, count=count)
            for code, count in sorted(reasons.items(), key=lambda item: (-item[1], item[0]))
        ],
        token_lengths=_lengths(report),
        token_length_chart=chart,
        token_lengths_sample=report.get("token_lengths_sample"),
        has_histogram=picture,
        show_picture=picture and chart is None,
        card=card.decode("utf-8", errors="replace") if card is not None else None,
        rejected=rejected_page(root, name, version, page, reason),
    )


def version_row(root: str, name: str, version: str, row_id: str) -> OpenedRow | None:
    """One row of a listed version, opened by id (see `dataset_rows.open_row`); None when not found."""
    if find_version(root, name, version) is None:
        return None
    report = dataset_registry.validation_report(root, name, version) or {}
    # Kept in place (not filtered): a rejected row names its source by index.
    sources = [source if isinstance(source, dict) else {} for source in report.get("sources") or []]
    return open_row(root, name, version, row_id, sources)
