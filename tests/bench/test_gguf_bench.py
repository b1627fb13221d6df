from __future__ import annotations

import pytest

from tests.bench import run_bench

FIGURES = {
    "size_bytes",
    "size_ratio",
    "max_logit_diff",
    "next_token_agreement",
    "position_agreement",
    "greedy_agreement",
    "greedy_identical_prompts",
    "tokenizer_agreement",
    "metric_drop",
    "greedy_prompts",
    "greedy_tokens",
}


@pytest.mark.slow
def test_gguf_bench_exports_and_checks_every_gguf_type_and_ends_with_one_json_line(tmp_path, tiny_model_dir):
    """A small run of bench/gguf_export.py on the tiny test model (`--quick`, 2 held-out rows): both GGUF
    files go through the export and check_export steps, the table has a row per file and the last line is
    the JSON summary. The size targets are judged on the demo model's full run, not here: the tiny model's
    norms and small rows weigh more than a real model's."""
    lines, summary = run_bench(
        "gguf_export.py",
        *("--quick", "--rows", "2", "--model-dir", str(tiny_model_dir)),
        *("--store", str(tmp_path / "store")),
        timeout=300,
    )
    assert {"metric", "value", "baseline", "ratio", "target", "passed"} <= set(summary)
    assert summary["metric"] == "gguf q8_0 size vs PyTorch" and summary["target"] == 0.3
    assert summary["value"] > 0 and summary["baseline"] > 0
    assert summary["ratio"] == pytest.approx(summary["value"] / summary["baseline"], rel=1e-3)
    assert 0 < summary["ratio"] < summary["f16_ratio"] < 1
    assert set(summary["files"]) == {"f16", "q8_0"}
    for name, figures in summary["files"].items():
        assert set(figures) == FIGURES, name
        assert figures["size_bytes"] > 0 and figures["max_logit_diff"] >= 0
        for key in ("next_token_agreement", "position_agreement", "greedy_agreement", "tokenizer_agreement"):
            assert 0 <= figures[key] <= 1, (name, key)
        assert (figures["greedy_prompts"], figures["greedy_tokens"]) == (3, 4)  # --quick
        assert 0 <= figures["greedy_identical_prompts"] <= 3
    assert summary["files"]["q8_0"]["size_bytes"] == summary["value"]
    # The tiny model's own files pass the shipped gates.
    assert summary["gates_passed"] is True and summary["problems"] == []
    within = summary["ratio"] <= 0.3 and summary["f16_ratio"] <= summary["f16_target"] == 0.55
    assert summary["passed"] is within  # False here: the tiny model's norms weigh more than a real model's
    assert summary["rows"] == 2 and summary["quick"] is True and summary["model"] == tiny_model_dir.name
    assert summary["seconds"]["export"] > 0 and summary["seconds"]["check_export"] > 0
    files = {line.split()[0] for line in lines if line.split() and line.split()[0].endswith(".gguf")}
    assert files == {"tiny-f16.gguf", "tiny-q8_0.gguf"}
    assert any(line.startswith("time per step: export") for line in lines)
    assert "check_export gates: passed" in lines
