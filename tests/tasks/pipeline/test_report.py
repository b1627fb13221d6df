"""The experiment report: HTML with every job and failure, escaped text, valid PNG plots, a manifest."""

from __future__ import annotations

import json

import pytest

from tasks.contracts.export import CheckExportResult
from tasks.contracts.promotion import PromotionDecision
from tasks.contracts.selection import Leaderboard
from tasks.pipeline.report import ReportInputs, write_report
from tasks.pipeline.report_data import export_rows
from tasks.storage import store

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
WEIGHTS = {"adapter_uri": "file:///adapter", "model_uri": None}


def _curve(path, start: float) -> str:
    lines = [{"step": s, "loss": start - 0.2 * s, "learning_rate": 2e-4} for s in range(1, 6)]
    lines.append({"step": 5, "eval_loss": start - 0.5})
    lines.append({"step": 5, "train_runtime": 3.0})  # summary record without loss: ignored
    path.write_text("\n".join(json.dumps(line) for line in lines) + "\n")
    return store.to_uri(path)


@pytest.fixture
def job(tmp_path):
    run = store.to_uri(tmp_path / "run")
    experiment = {
        "name": "demo",
        "description": "A tiny <b>matrix</b>",
        "datasets": [{"name": "alpaca", "uri": "builtin:alpaca-mini"}],
        "models": [{"name": "tiny"}],
        "hparams": [{"name": "lr1"}, {"name": "lr2"}, {"name": "lr3"}],
        "training": {"type": "sft", "method": "lora"},
        "scoring": {"metrics": ["exact_match", "rouge_l"], "primary": "rouge_l"},
        "export": {"enabled": True, "formats": ["onnx", "onnx-int8"]},
        "promotion": {"margin": 0.0},
    }
    leaderboard = [
        {
            "rank": 1,
            "job_id": "j1",
            "label": "alpaca|tiny|lr1",
            "kind": "train",
            "status": "succeeded",
            "metrics": {"rouge_l": 0.42, "exact_match": 0.1},
            "scored_on": "alpaca",
            "error": None,
            "train": {**WEIGHTS, "train_loss": 1.9, "steps": 5, "runtime_s": 3.2, "tokens_per_s": 1500.0},
            "metrics_jsonl": _curve(tmp_path / "m1.jsonl", 3.0),
        },
        {
            "rank": 2,
            "job_id": "j2",
            "label": "alpaca|tiny|<script>alert(1)</script>",
            "kind": "train",
            "status": "succeeded",
            "metrics": {"rouge_l": 0.30, "exact_match": 0.0},
            "scored_on": "alpaca",
            "error": None,
            "train": {**WEIGHTS, "train_loss": 2.1, "steps": 5, "runtime_s": 3.0, "tokens_per_s": 1400.0},
            "metrics_jsonl": _curve(tmp_path / "m2.jsonl", 3.2),
        },
        {
            "rank": None,
            "job_id": "j3",
            "label": "alpaca|tiny|lr3",
            "kind": "train",
            "status": "failed",
            "metrics": {},
            "scored_on": None,
            "error": "CUDA out of memory: tried to allocate 2.00 GiB",
            "train": None,
            "metrics_jsonl": None,
        },
        {
            "rank": None,
            "job_id": "ref-tiny",
            "label": "alpaca|tiny|base",
            "kind": "reference",
            "status": "reference",
            "metrics": {"rouge_l": 0.12, "exact_match": 0.0},
            "scored_on": "alpaca",
            "error": None,
            "train": None,
            "metrics_jsonl": None,
        },
    ]
    export_checks = {  # the shape tasks.exporting.checks returns
        "primary": "rouge_l",
        "gated_metric": "rouge_l",
        "reference_metrics": {"rouge_l": 0.42},
        "test_rows": 4,
        "pytorch": {"size_bytes": 50_000_000, "latency": {"tokens": 32, "p50_ms": 9.0, "p95_ms": 11.0}},
        "passed": False,
        "formats": {
            "onnx": {
                "uri": "file:///x/onnx",
                "size_bytes": 12_500_000,
                "latency": {"tokens": 32, "p50_ms": 4.2, "p95_ms": 6.1},
                "metrics": {"rouge_l": 0.42},
                "metric_drop": 0.0,
                "max_logit_diff": 0.003,
                "problems": [],
                "passed": True,
            },
            "onnx-int8": {
                "uri": "file:///x/onnx-int8",
                "size_bytes": 4_000_000,
                "latency": {"tokens": 32, "p50_ms": 2.1, "p95_ms": 3.3},
                "metric_drop": 0.08,
                "problems": ["onnx-int8: metric_drop (rouge_l) 0.08 > 0.05"],
                "passed": False,
            },
        },
    }
    promotion = {
        "promoted": True,
        "reason": "no champion yet: the candidate becomes production",
        "version": 1,
        "champion_version": None,
        "champion_metric": None,
        "candidate_metric": 0.42,
        "registry_uri": store.to_uri(tmp_path / "registry" / "demo"),
    }
    return {
        "output": f"{run}/report",
        "experiment": experiment,
        "leaderboard": leaderboard,
        "winner": leaderboard[0],
        "primary": "rouge_l",
        "export_checks": export_checks,
        "promotion": promotion,
    }


def _inputs(job: dict) -> ReportInputs:
    """The report's inputs as `write_run_report` reads them from the run: validated contracts."""
    checks, promotion = job["export_checks"], job["promotion"]
    return ReportInputs(
        output=job["output"],
        experiment=job["experiment"],
        board=Leaderboard(primary=job["primary"], rows=job["leaderboard"], winner=job["winner"]),
        checks=CheckExportResult.model_validate(checks) if checks else None,
        promotion=PromotionDecision.model_validate(promotion) if promotion else None,
    )


def test_report_page_plots_and_manifest(job):
    result = write_report(_inputs(job))
    assert result["report_uri"] == f"{job['output']}/index.html"
    html = store.local_path(result["report_uri"]).read_text()
    for row in job["leaderboard"][:1] + job["leaderboard"][2:]:
        assert row["label"] in html
    assert "CUDA out of memory: tried to allocate 2.00 GiB" in html
    assert "<script>" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "A tiny &lt;b&gt;matrix&lt;/b&gt;" in html
    assert "onnx-int8: metric_drop (rouge_l) 0.08 &gt; 0.05" in html and "pytorch (reference)" in html
    assert "max_logit_diff: 0.003" in html and ">6.1<" in html and ">12.5<" in html
    assert "no champion yet" in html and "reference" in html
    assert html.count("data:image/png;base64,") == 2

    assert [p.rsplit("/", 1)[1] for p in result["plots"]] == ["loss.png", "metrics.png"]
    for uri in result["plots"]:
        data = store.local_path(uri).read_bytes()
        assert data[:8] == PNG_MAGIC and len(data) > 5000

    manifest = store.read_json(f"{job['output']}/manifest.json")
    assert set(manifest["files"]) == {"index.html", "loss.png", "metrics.png"}
    assert manifest["result"] == result
    assert store.verify(job["output"]) == []


def test_report_without_winner_curves_exports_or_promotion(tmp_path):
    output = store.to_uri(tmp_path / "run" / "report")
    leaderboard = [
        {
            "rank": None,
            "job_id": "j1",
            "label": "a|b|c",
            "kind": "train",
            "status": "failed",
            "metrics": {},
            "scored_on": None,
            "error": "dataset <empty>",
            "train": None,
            "metrics_jsonl": store.to_uri(tmp_path / "missing.jsonl"),
        },
    ]
    result = write_report(
        _inputs(
            {
                "output": output,
                "experiment": {"name": "x"},
                "leaderboard": leaderboard,
                "winner": None,
                "primary": "eval_loss",
                "export_checks": None,
                "promotion": None,
            }
        )
    )
    html = store.local_path(result["report_uri"]).read_text()
    assert "dataset &lt;empty&gt;" in html and "No job succeeded" in html
    assert "No export checks were run" in html and "Promotion was not run" in html
    for uri in result["plots"]:
        assert store.local_path(uri).read_bytes()[:8] == PNG_MAGIC


def test_export_rows_accepts_list_and_flat_shapes():
    rows = export_rows(
        {"checks": [{"format": "onnx", "size_mb": 3.0, "latency_p50_ms": 1.0, "passed": True}]}
    )
    assert rows[0]["format"] == "onnx" and rows[0]["size_mb"] == 3.0 and rows[0]["p50"] == 1.0
    rows = export_rows({"onnx": {"size_bytes": 2_000_000, "reason": "slow", "latency_ms": {"p95": 7.0}}})
    assert rows[0]["size_mb"] == 2.0 and rows[0]["reasons"] == ["slow"] and rows[0]["p95"] == 7.0


def test_report_shows_pruned_trials_merges_the_search_and_what_training_cost(tmp_path):
    output = store.to_uri(tmp_path / "run" / "report")
    train = {"adapter_uri": "file:///a", "model_uri": None, "steps": 24, "device": "cpu", "device_hours": 0.5}
    common = {"kind": "train", "scored_on": "tuna", "metrics_jsonl": None, "train": train}
    rows = [
        {
            **common,
            "rank": 1,
            "job_id": "m",
            "label": "tuna|m|merge-ties",
            "kind": "merge",
            "status": "succeeded",
            "metrics": {"rouge_l": 0.8},
            "parts": ["tuna|m|<b>a</b>", "tuna|m|b"],
            "merge_method": "ties",
            "device_hours": 0.5,
            "cost": 1.25,
        },
        {
            **common,
            "rank": None,
            "job_id": "p",
            "label": "tuna|m|c",
            "status": "pruned",
            "metrics": {},
            "stopped": "stopped by halving at step 6",
            "round": 1,
            "device_hours": 0.1,
            "cost": 0.25,
        },
    ]
    board = Leaderboard(
        primary="rouge_l",
        rows=rows,
        winner=rows[0],
        device_hours=0.6,
        cost=1.5,
        currency="EUR",
        search="grid with successive halving: 8 trials in 2 rounds, 6 pruned by halving",
    )
    inputs = ReportInputs(output=output, experiment={"name": "x"}, board=board, checks=None, promotion=None)
    html = store.local_path(write_report(inputs)["report_uri"]).read_text()
    assert "<th>Device-hours</th><th>Cost (EUR)</th><th>Notes</th>" in html
    assert "merged (ties) from tuna|m|&lt;b&gt;a&lt;/b&gt;, tuna|m|b" in html
    assert "stopped by halving at step 6 (round 1)" in html and "<tr class='pruned'>" in html
    assert "1 succeeded, 0 failed, 1 pruned by successive halving" in html
    assert "Search: grid with successive halving: 8 trials in 2 rounds" in html
    assert "Training used 0.6 device-hours, 1.5 EUR." in html
