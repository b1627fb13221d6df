from __future__ import annotations

import pytest

from tests.bench import run_bench


@pytest.mark.slow
def test_data_prepare_bench_runs_both_sides_and_ends_with_one_json_line():
    """A small run of bench/data_prepare.py: both sides keep the same number of rows, and the last line
    is the JSON summary (the ratio itself is measured at 1M rows, not here)."""
    lines, summary = run_bench("data_prepare.py", "--rows", "3000", "--small-rows", "1500", timeout=900)
    assert {"metric", "value", "baseline", "ratio", "target"} <= set(summary)
    assert summary["value"] > 0 and summary["baseline"] > 0 and summary["target"] == 2.0
    assert sum("same rows kept: yes" in line for line in lines) == 2
