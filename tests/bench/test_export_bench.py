from __future__ import annotations

import pytest

from tests.bench import run_bench


@pytest.mark.slow
def test_export_bench_compares_pytorch_onnx_and_int8_and_ends_with_one_json_line(tmp_path, tiny_model_dir):
    """A small run of bench/export.py on the tiny test model (`--model-dir`, 4 rows, 3 timed runs, tiny
    calibration): every side is measured and the last line is the JSON summary. The targets themselves are
    judged on the demo model's full run, not here; the demo model's own ONNX and INT8 export runs in
    tests/test_demo.py."""
    lines, summary = run_bench(
        "export.py",
        *("--runs", "3", "--rows", "4", "--fine-tune-steps", "0", "--samples", "4", "--seq-length", "32"),
        *("--store", str(tmp_path / "store"), "--model-dir", str(tiny_model_dir)),
        timeout=600,
    )
    assert {"metric", "value", "baseline", "ratio", "target", "passed"} <= set(summary)
    assert (
        summary["target"] == 0.6 and summary["size_target"] == 0.3 and summary["metric_drop_target"] == 0.01
    )
    assert summary["value"] > 0 and summary["baseline"] > 0
    assert summary["ratio"] == pytest.approx(summary["value"] / summary["baseline"], rel=1e-3)
    # Measured, not judged: on the tiny model the ONNX graph itself outweighs its few kilobytes of weights
    # (INT8 came out 1.95x fp32); the demo model's 0.27x is the full run's figure (docs/export.md).
    assert summary["size_ratio"] > 0
    assert summary["int8_kept"] in ("static", "dynamic") and summary["rows"] == 4
    table = {
        line.split()[0] + " " + line.split()[1]: line
        for line in lines
        if line.startswith(("pytorch", "onnx"))
    }
    assert set(table) == {"pytorch fp32", "onnx fp32", "onnx int8"}
