from __future__ import annotations

import pytest

from tests.bench import run_bench


@pytest.mark.slow
def test_train_throughput_bench_runs_both_sides_on_the_same_tokens_and_ends_with_one_json_line(tmp_path):
    """A small run of bench/train_throughput.py on the tiny test model (4 steps of 8 rows): both sides train,
    on the same non-padding tokens, and the last line is the JSON summary. The targets themselves are
    judged on the full run, not here."""
    lines, summary = run_bench(
        "train_throughput.py",
        *("--model", "tiny", "--steps", "4", "--batch-size", "8", "--micro-batch-size", "4"),
        *("--store", str(tmp_path / "store")),
        timeout=300,
    )
    expected = {"metric", "value", "baseline", "ratio", "target", "peak_memory_ratio", "loss_project"}
    assert expected | {"loss_baseline", "loss_diff_pct", "mfu", "passed"} <= set(summary)
    assert summary["metric"].endswith(("(cpu)", "(cuda)"))
    assert summary["target"] == (1.5 if summary["metric"].endswith("(cuda)") else 1.3)
    assert summary["value"] > 0 and summary["baseline"] > 0
    assert summary["ratio"] == pytest.approx(summary["value"] / summary["baseline"], rel=1e-2)
    # Same rows, same order, same steps: both sides saw the same real tokens at every step.
    assert summary["same_tokens"] is True
    assert summary["tokens_project"] == summary["tokens_baseline"] > 0
    assert summary["steps"] == 4 and summary["peak_memory_ratio"] > 0
    assert summary["loss_project"] > 0 and summary["loss_baseline"] > 0
    assert isinstance(summary["passed"], bool)
    assert any(line.startswith("project") for line in lines) and any(
        line.startswith("baseline") for line in lines
    )
