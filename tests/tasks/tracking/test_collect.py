"""Reading a run from the store for MLflow: curves, resolved hyperparameters, runs selection never saw."""

from __future__ import annotations

from tasks.config.hparams import HPARAM_DEFAULTS
from tasks.storage import store
from tasks.tracking.collect import collect, flatten, job_params, read_curve
from tests.fixtures.console_store import FakeRun, build_run


def test_a_curve_keeps_every_step_and_skips_a_line_cut_short(tmp_path):
    path = tmp_path / "metrics.jsonl"
    path.write_text('{"step": 1, "loss": 2.0, "note": "x"}\n{"step": 2, "loss": NaN}\n{"step": 3, "lo')
    curve = read_curve(path.as_uri())
    assert [(p.step, p.values) for p in curve] == [(1, {"loss": 2.0})]
    assert read_curve(None) == [] and read_curve((tmp_path / "absent.jsonl").as_uri()) == []


def test_a_jobs_params_are_its_resolved_hyperparameters_dataset_model_and_method():
    spec = {
        "hparams": {"name": "a", "learning_rate": 1e-4},
        "dataset": {"name": "qa", "version": "abc"},
        "model": {"name": "tiny", "hub_id": "org/tiny"},
        "training": {"type": "sft", "method": "lora"},
    }
    params = job_params(spec)
    assert params["learning_rate"] == "0.0001" and params["name"] == "a"
    default = next(k for k, v in HPARAM_DEFAULTS.items() if v is not None and k != "learning_rate")
    assert params[default] == flatten(HPARAM_DEFAULTS[default], default)[default]
    assert (params["dataset_version"], params["base_model_source"], params["method"]) == (
        "abc",
        "org/tiny",
        "lora",
    )


def test_a_run_stopped_before_selection_lists_its_planned_jobs_as_failed(store_root):
    prefix = build_run(store_root, FakeRun(experiment="early", finished=False))
    record = collect(prefix, store_root)
    assert [(j.label, j.status) for j in record.jobs] == [
        ("qa|tiny|lr1e-3", "failed"),
        ("qa|tiny|lr2e-4", "failed"),
    ]
    assert record.jobs[0].error == "training did not finish"
    assert record.winner is None and record.version is None and record.artifacts == []
    assert not store.exists(store.join(prefix, "leaderboard.json"))
