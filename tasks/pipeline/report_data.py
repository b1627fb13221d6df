"""The report's data: loss curves read from each job's metrics.jsonl, export checks normalised to one row
per format, the primary metric and which way it points, the approval decision in words, and values
formatted as the report shows them."""

from __future__ import annotations

import json
import math
from collections.abc import Iterable
from typing import Any

from tasks.contracts.promotion import ApprovalDecision
from tasks.contracts.selection import LeaderboardRow
from tasks.scoring.plugins import lower_is_better
from tasks.storage import store


def fmt(value: Any, digits: int = 4) -> str:
    """A value as the report and the pages show it: 4 significant digits, '–' for missing."""
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "–"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:.{digits}g}" if abs(value) < 1e6 else f"{value:.3e}"
    return str(value)


def _number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def curves(records: Iterable[Any], keys: tuple[str, ...]) -> dict[str, list[tuple[float, float]]]:
    """(step, value) points of each of `keys` in a metrics.jsonl's records (train records carry `loss`,
    evaluation records `eval_loss`); records without a step, or not records at all, are skipped. The
    report's plots and the tunerflow pages both draw from this."""
    points: dict[str, list[tuple[float, float]]] = {key: [] for key in keys}
    for record in records:
        step = record.get("step") if isinstance(record, dict) else None
        if not _number(step):
            continue
        for key in keys:
            if _number(record.get(key)):
                points[key].append((step, record[key]))
    return points


def read_curve(uri: str | None) -> tuple[list[tuple[float, float]], list[tuple[float, float]]]:
    """(train loss points, eval loss points) from a metrics.jsonl; empty lists when unreadable."""
    if not uri:
        return [], []
    try:
        path = store.fetch(uri)
        lines = path.read_text().splitlines() if path.is_file() else []
    except (OSError, ValueError, store.StoreError):
        return [], []
    records = []
    for line in lines:
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    points = curves(records, ("loss", "eval_loss"))
    return points["loss"], points["eval_loss"]


def primary_value(row: LeaderboardRow, primary: str) -> float | None:
    value = row.metrics.get(primary)
    return value if isinstance(value, int | float) and not isinstance(value, bool) else None


def better(primary: str) -> str:
    """Which way the primary metric points, for labels. The report must render even when the metric
    is no longer known (a plugin removed since the run), so that case is said, not raised."""
    try:
        return "lower is better" if lower_is_better(primary) else "higher is better"
    except ValueError:
        return "unknown metric: direction not known"


def approval_text(approval: ApprovalDecision) -> str:
    """Who decided what and when, in words: the report's and the task log's line for `approval.json`."""
    if approval.timed_out:
        return f"no decision in time: rejected by the timeout at {approval.decided_at}"
    verdict = "approved" if approval.approved else "rejected"
    return f"{verdict} by {approval.decided_by} at {approval.decided_at}"


def _first(mapping: dict[str, Any], *keys: str) -> Any:
    return next((mapping[k] for k in keys if mapping.get(k) is not None), None)


def export_rows(checks: dict[str, Any] | list[Any] | None) -> list[dict[str, Any]]:
    """Normalise the export checks into one row per format."""
    if not checks:
        return []
    if isinstance(checks, list):
        items = [(c.get("format") or c.get("name") or f"#{i}", c) for i, c in enumerate(checks)]
    elif isinstance(checks.get("formats"), dict):
        items = list(checks["formats"].items())
        if isinstance(checks.get("pytorch"), dict):
            items.insert(0, ("pytorch (reference)", checks["pytorch"]))
    elif isinstance(checks.get("formats"), list) or isinstance(checks.get("checks"), list):
        return export_rows(checks.get("formats") or checks.get("checks"))
    else:
        items = [(k, v) for k, v in checks.items() if isinstance(v, dict)]
    rows = []
    for name, check in items:
        latency = check.get("latency_ms") or check.get("latency")
        latency = latency if isinstance(latency, dict) else {}
        size = check.get("size_bytes")
        size_mb = check.get("size_mb")
        if size_mb is None and isinstance(size, int | float):
            size_mb = size / 1e6
        reasons = check.get("reasons") or check.get("problems") or check.get("reason") or []
        if isinstance(reasons, str):
            reasons = [reasons]
        known = {
            "format",
            "name",
            "latency_ms",
            "latency",
            "metrics",
            "size_bytes",
            "size_mb",
            "reasons",
            "problems",
            "reason",
        }
        known |= {"latency_p50_ms", "latency_p95_ms", "p50_ms", "p95_ms", "metric_drop", "passed", "uri"}
        details = {
            k: v for k, v in check.items() if k not in known and isinstance(v, int | float | str | bool)
        }
        rows.append(
            {
                "format": name,
                "size_mb": size_mb,
                "p50": _first(latency, "p50", "p50_ms") or _first(check, "latency_p50_ms", "p50_ms"),
                "p95": _first(latency, "p95", "p95_ms") or _first(check, "latency_p95_ms", "p95_ms"),
                "metric_drop": check.get("metric_drop"),
                "passed": check.get("passed"),
                "reasons": [str(r) for r in reasons],
                "details": details,
            }
        )
    return rows
