"""The report's data: loss curves read from each job's metrics.jsonl, export checks normalised to one row
per format, the primary metric and which way it points, and values formatted as the report shows them."""

from __future__ import annotations

import json
import math
from typing import Any

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


def read_curve(uri: str | None) -> tuple[list[tuple[float, float]], list[tuple[float, float]]]:
    """(train loss points, eval loss points) from a metrics.jsonl; empty lists when unreadable."""
    train: list[tuple[float, float]] = []
    evals: list[tuple[float, float]] = []
    if not uri:
        return train, evals
    try:
        path = store.fetch(uri)
        lines = path.read_text().splitlines() if path.is_file() else []
    except (OSError, ValueError, store.StoreError):
        return train, evals
    for line in lines:
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            continue
        step = record.get("step")
        if not isinstance(step, int | float):
            continue
        if isinstance(record.get("loss"), int | float):
            train.append((step, record["loss"]))
        if isinstance(record.get("eval_loss"), int | float):
            evals.append((step, record["eval_loss"]))
    return train, evals


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
