"""Leaderboard and winner: argmax of the primary metric over the jobs that succeeded, read from the store.

Reading committed outputs (not XCom) means a job that failed, was skipped or never ran is still
listed, with the reason its step wrote to error.json.

The score ranked is the primary metric of the PyTorch model, or with `scoring.rank_on: onnx-int8` the
primary metric of each job's INT8 export (scored by the evaluate step), so that the winner is the best
model as deployed; both are on the leaderboard. A job without the ranked value ranks last.

Tie-breaks, in order: the better ranked value (higher, or lower for eval_loss, perplexity and plugins
with GREATER_IS_BETTER = False); then the better PyTorch value (when ranking on the export); then the
lower validation loss measured at the end of training; then the label, alphabetically, so that the
choice is stable.
"""

from __future__ import annotations

import math
from typing import Any

from tasks.scoring.plugins import lower_is_better
from tasks.storage import layout, store


def _error(prefix: str) -> str | None:
    path = store.join(prefix, "error.json")
    if store.exists(path):
        error = store.read_json(path)
        return f"{error['step']}: {error['message']}"
    return None


def job_row(run_uri: str, job: dict[str, Any]) -> dict[str, Any]:
    prefix = layout.job(run_uri, job["job_id"])
    train = store.committed_result(layout.step(prefix, "train")) if job["kind"] == "train" else None
    evaluation = store.committed_result(layout.step(prefix, "evaluate"))
    row = {
        "job_id": job["job_id"],
        "label": job["label"],
        "kind": job["kind"],
        "train": train,
        "metrics": (evaluation or {}).get("metrics", {}),
        "scored_on": (evaluation or {}).get("scored_on"),
        "metrics_jsonl": (train or {}).get("metrics_uri"),
    }
    if (evaluation or {}).get("quantized"):
        row["quantized"] = evaluation["quantized"]
    if job["kind"] == "reference":
        row["status"] = "reference" if evaluation else "failed"
    else:
        row["status"] = "succeeded" if train and evaluation else "failed"
    if row["status"] == "failed":
        row["error"] = (
            _error(layout.step(prefix, "train"))
            or _error(layout.step(prefix, "evaluate"))
            or "did not run: an upstream task failed or was skipped"
        )
    return row


def _better_first(value: float | None, lower: bool) -> float:
    if value is None or math.isnan(value):
        return math.inf  # without the metric a job ranks last, whichever way the metric points
    return value if lower else -value


def ranked_metrics(row: dict[str, Any], rank_on: str) -> dict[str, Any]:
    """The metrics a row is ranked on: the PyTorch model's, or its export's for `rank_on`."""
    if rank_on == "pytorch":
        return row["metrics"]
    return (row.get("quantized") or {}).get("metrics") or {}


def _sort_key(row: dict[str, Any], primary: str, lower: bool, rank_on: str) -> tuple:
    first = _better_first(ranked_metrics(row, rank_on).get(primary), lower)
    pytorch = _better_first(row["metrics"].get(primary), lower)
    eval_loss = (row.get("train") or {}).get("eval_loss")
    return (first, pytorch, eval_loss if eval_loss is not None else math.inf, row["label"])


def leaderboard(
    run_uri: str, evaluations: list[dict[str, Any]], primary: str, rank_on: str = "pytorch"
) -> dict[str, Any]:
    rows = [job_row(run_uri, job) for job in evaluations]
    lower = lower_is_better(primary)
    ranked = sorted(
        (r for r in rows if r["status"] == "succeeded"), key=lambda r: _sort_key(r, primary, lower, rank_on)
    )
    for rank, row in enumerate(ranked, start=1):
        row["rank"] = rank
    others = [r for r in rows if r["status"] != "succeeded"]
    board = {
        "primary": primary,
        "rank_on": rank_on,
        "rows": ranked + sorted(others, key=lambda r: (r["status"], r["label"])),
        "winner": ranked[0] if ranked else None,
        "failed": [{"label": r["label"], "error": r["error"]} for r in rows if r["status"] == "failed"],
    }
    store.write_json(store.join(run_uri, "leaderboard.json"), board)
    return board


def export_specs(run_uri: str, store_root: str, winner: dict[str, Any]) -> dict[str, str]:
    """Write the export and check specs for the winner; returns their URIs."""
    from tasks.pipeline.plan import load_experiment, step_argv
    from tasks.scoring.evaluation import scored_on

    experiment = load_experiment(run_uri)
    job_prefix = layout.job(run_uri, winner["job_id"])
    train_spec = store.read_json(store.join(job_prefix, "train.json"))
    evaluate_spec = store.read_json(store.join(job_prefix, "evaluate.json"))
    export_output = store.join(run_uri, "export")
    export = {
        "step": "export",
        "output": export_output,
        "store_root": store_root,
        "model": train_spec["model"],
        "adapter_uri": winner["train"]["adapter_uri"],
        "model_uri": winner["train"]["model_uri"],
        "formats": experiment["export"]["formats"],
        "export_config": experiment["export"],
        "dataset": train_spec["dataset"],
    }
    check = {
        "step": "check_export",
        "output": store.join(run_uri, "check_export"),
        "store_root": store_root,
        "model": train_spec["model"],
        "export_output": export_output,
        # The rows the winner was scored on, so the metric drop compares like with like.
        "dataset": scored_on(evaluate_spec),
        "scoring": experiment["scoring"],
        "export_config": experiment["export"],
        "reference_metrics": winner["metrics"],
    }
    uris = {}
    for name, spec in (("export", export), ("check_export", check)):
        uris[f"{name}_spec"] = store.join(run_uri, f"{name}.json")
        store.write_json(uris[f"{name}_spec"], spec)
        uris[f"{name}_argv"] = step_argv(name, uris[f"{name}_spec"])
    return uris
