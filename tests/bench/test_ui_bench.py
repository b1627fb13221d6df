"""bench/ui.py: the run page timed on file and S3 stores at two sizes, with the growth per job."""

from __future__ import annotations

from tests.bench import run_bench


def test_ui_bench_times_the_run_page_on_file_and_s3_and_reports_growth():
    lines, summary = run_bench("ui.py", "--sizes", "2,4", "--rows", "20", "--requests", "2", timeout=900)
    table = "\n".join(lines)
    for store in ("file", "s3"):
        assert any(line.startswith(f"{store} ") and " 4 " in line for line in lines), table
        assert f"{store}: time per job at N=4 / at N=2" in table
    assert "file, N=4:" in table and "300 ms target" in table
    assert summary["baseline"] == 300.0 and summary["value"] > 0
    assert set(summary["growth"]) == {"file", "s3"}
    linear = all(growth <= 1.2 for growth in summary["growth"].values())
    assert summary["passed"] == (summary["value"] < 300.0 and linear)
