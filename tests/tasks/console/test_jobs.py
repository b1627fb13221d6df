"""The job page's view model and the experiments page's: hyperparameters, curves, checkpoints, answers
with per-row scores, TensorBoard files; runs per experiment with their states."""

from __future__ import annotations

import os

import pytest

from tasks.console.experiments import experiments_page
from tasks.console.jobs import event_file, job_page
from tasks.console.runs import NotFound
from tasks.storage import layout, store
from tests.fixtures.console_store import FakeJob, FakeRun, build_run

RUN = FakeRun()
SLUG = store.slug(RUN.run_id)


@pytest.fixture
def root(tmp_path) -> str:
    root = store.to_uri(tmp_path / "store")
    build_run(root, RUN)
    return root


def test_a_job_shows_its_hyperparameters_curves_checkpoints_and_scored_answers(root):
    page = job_page(root, "demo", SLUG, "qa--tiny--lr2e-4")
    assert page.label == "qa|tiny|lr2e-4" and page.status == "succeeded"
    assert ("lr2e-4" in dict(page.hparams).values()) and dict(page.hparams)["lora_r"] == 8
    assert dict(page.settings)["method"] == "lora" and dict(page.settings)["model"] == "tiny"
    charts = {c.title: c for c in page.charts}
    assert [s.label for s in charts["Loss"].series] == ["loss", "eval_loss"]
    assert charts["Loss"].series[1].dashed and charts["Loss"].series[1].points == [(20, 0.5)]
    for title in ("Learning rate", "Gradient norm", "Tokens per second"):
        assert len(charts[title].series[0].points) == 20
    assert [(c.step, c.tokens_seen) for c in page.checkpoints] == [(10, 100), (20, 200)]
    assert [q.answers[0].scores for q in page.predictions.questions] == [
        {"rouge_l": 1.0, "exact_match": 1.0},
        {"rouge_l": 0.25, "exact_match": 0.0},
    ]
    assert [(f.name, f.size) for f in page.event_files] == [("events.out.tfevents.1.host", 19)]
    assert page.tensorboard_command == f"tensorboard --logdir {store.local_path(root)}/" + (
        f"experiments/demo/runs/{SLUG}/jobs/qa--tiny--lr2e-4/train/tensorboard"
    )
    assert [(link.task_id, link.map_index) for link in page.logs] == [("train", 1), ("evaluate", 1)]
    assert page.metrics == {"rouge_l": 0.4, "exact_match": 0.2}


def test_a_base_model_reference_has_a_job_page_without_training(root):
    page = job_page(root, "demo", SLUG, "qa--tiny--base")
    assert page.kind == "reference" and page.hparams == [] and page.checkpoints == []
    assert [(link.task_id, link.map_index) for link in page.logs] == [("score_base", 0)]
    assert page.predictions.total == 2


def test_only_listed_tensorboard_files_are_served(root):
    assert (
        event_file(root, "demo", SLUG, "qa--tiny--lr1e-3", "events.out.tfevents.1.host")
        == b"\x00tensorboard-events"
    )
    for name in ("../train.json", "manifest.json", "nope"):
        with pytest.raises(NotFound):
            event_file(root, "demo", SLUG, "qa--tiny--lr1e-3", name)
    with pytest.raises(NotFound):
        job_page(root, "demo", SLUG, "qa--tiny--nope")


def test_experiments_list_their_runs_with_airflows_state_or_the_stores(tmp_path):
    root = store.to_uri(tmp_path / "store")
    runs = [
        FakeRun(run_id="scheduled__1", jobs=[FakeJob("a", 0.3)]),
        FakeRun(run_id="scheduled__2", jobs=[FakeJob("a", 0.6)]),
        FakeRun(run_id="manual__3", finished=False, description="Retrained."),
        FakeRun(experiment="other", run_id="manual__9"),
    ]
    for minute, run in enumerate(runs):
        prefix = build_run(root, run)
        # Started a minute apart: the page orders runs by when their conf was written.
        os.utime(store.local_path(layout.experiment_record(prefix)), (60 * minute, 60 * minute))
    page = experiments_page(root)
    assert [e.name for e in page.experiments] == ["demo", "other"]
    demo = page.experiments[0]
    assert [(r.run_id, r.state) for r in demo.runs] == [
        ("scheduled__1", "finished"),
        ("scheduled__2", "finished"),
        ("manual__3", "incomplete"),
    ]
    assert [(r.winner, r.primary, r.value) for r in demo.runs[:2]] == [
        ("qa|tiny|a", "rouge_l", 0.3),
        ("qa|tiny|a", "rouge_l", 0.6),
    ]
    assert demo.description == "Retrained."
    assert demo.chart.series[0].points == [(1.0, 0.3), (2.0, 0.6)]
    asked = []

    def states(run_ids):
        asked.append(sorted(run_ids))
        return {"manual__3": "running"}

    assert [r.state for r in experiments_page(root, states).experiments[0].runs][-1] == "running"
    assert asked == [["manual__3", "manual__9", "scheduled__1", "scheduled__2"]]
