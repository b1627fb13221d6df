"""The skip rules both backends apply: a reason to skip, or None to run."""

from __future__ import annotations

import json
import subprocess
import sys

from tasks.pipeline import skips
from tasks.pipeline.plan import run_info
from tasks.storage import store
from tests.conftest import REPO
from tests.tasks.pipeline.specs import write_evaluate_spec


def test_evaluate_is_skipped_only_when_its_training_committed_nothing(tmp_path):
    root = tmp_path.as_uri()
    train_output = store.join(root, "jobs", "j1", "train")
    spec_uri = store.join(root, "jobs", "j1", "evaluate.json")
    write_evaluate_spec(spec_uri, label="tuna|tiny|a", train_output=train_output)
    assert skips.training_failed(spec_uri) == "tuna|tiny|a: training failed, nothing to score"
    store.ensure_dir(train_output)
    store.commit(train_output, {"adapter_uri": "x"})
    assert skips.training_failed(spec_uri) is None
    write_evaluate_spec(spec_uri, label="tuna|tiny|base", train_output=None, reference=True)
    assert skips.training_failed(spec_uri) is None


def test_export_is_skipped_when_the_validated_experiment_disables_it(store_root):
    run_uri = run_info("exp", "manual__1", store_root).run_uri
    experiment_uri = store.join(run_uri, "experiment.json")
    store.write_json(experiment_uri, {"experiment": {"export": {"enabled": False}}})
    assert skips.export_disabled(run_uri) == "export.enabled is false"
    store.write_json(experiment_uri, {"experiment": {"export": {"enabled": True}}})
    assert skips.export_disabled(run_uri) is None


def test_selection_and_the_report_page_need_planned_jobs_and_a_leaderboard(store_root):
    run_uri = run_info("exp", "manual__1", store_root).run_uri
    assert "nothing was planned" in skips.nothing_planned(run_uri)
    assert "no leaderboard" in skips.nothing_to_report(run_uri)
    store.write_json(store.join(run_uri, "jobs.json"), [])
    assert skips.nothing_planned(run_uri) is None
    store.write_json(store.join(run_uri, "leaderboard.json"), {"rows": [], "winner": None, "failed": []})
    assert skips.nothing_to_report(run_uri) is None


def test_mlflow_tracking_needs_a_connection_and_a_validated_conf(store_root):
    run_uri = run_info("exp", "manual__1", store_root).run_uri
    off = skips.not_tracked(run_uri, None, "tunerflow_mlflow")
    assert "MLflow tracking is off: no Airflow connection 'tunerflow_mlflow'" in off
    assert "validate_conf refused" in skips.not_tracked(run_uri, '{"host": "http://m"}', "tunerflow_mlflow")
    store.write_json(store.join(run_uri, "experiment.json"), {"experiment": {"name": "exp"}})
    assert skips.not_tracked(run_uri, '{"host": "http://m"}', "tunerflow_mlflow") is None


def test_the_rules_load_without_airflow_or_numpy():
    """The DAG processor imports them on every parse, and a pod's pre_execute hook runs them."""
    probe = (
        "import json, sys\n"
        "from tasks.pipeline import skips\n"
        "print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] in ('airflow', 'numpy'))))\n"
    )
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, cwd=REPO, check=True)
    assert json.loads(done.stdout.strip().splitlines()[-1]) == []
