"""bench/dag_import.py: one sample per DAG file and backend; no heavy module on either backend."""

from __future__ import annotations

from tests.bench import run_bench


def test_dag_import_bench_reports_every_dag_on_both_backends_and_no_heavy_module():
    lines, summary = run_bench("dag_import.py", "--runs", "1", timeout=300)
    table = "\n".join(lines)
    for name in ("finetune_experiment.py", "retrain_champion.py"):
        for backend in ("local", "kubernetes"):
            assert any(name in line and backend in line for line in lines), table
    assert "heavy modules imported: none" in table
    assert summary["baseline"] == 0.3
    assert summary["value"] > 0
    assert summary["passed"] == (summary["value"] <= 0.3)
