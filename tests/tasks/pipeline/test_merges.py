"""Planning merged candidates from a leaderboard built with the project's own writers."""

from __future__ import annotations

import pytest

from tasks.contracts.evaluate import EvaluateSpec
from tasks.contracts.merge import MergeSpec
from tasks.contracts.planning import PlannedJob, RunInfo
from tasks.contracts.prepare import PreparedDataset
from tasks.pipeline.merges import plan_merges
from tasks.pipeline.plan import plan_jobs, validate_conf
from tasks.pipeline.selection import leaderboard
from tasks.storage import layout, store
from tests.tasks.pipeline.test_plan_and_selection import CONF

RUN_ID = "manual__2026-12-01T10:00:00+00:00"
BASE = {
    **CONF,
    "merge": {"enabled": True, "top_k": 2, "method": "ties", "density": 0.3, "seed": 5},
}


def _run(store_root, **changes):
    conf = {**BASE, **changes}
    datasets = validate_conf(conf, RUN_ID, store_root)
    prepared = [PreparedDataset(name=d.name, uri=f"file:///prepared/{d.name}", kind="chat") for d in datasets]
    info = RunInfo(run_uri=layout.run(store_root, "exp", RUN_ID), store_root=store_root)
    return info, plan_jobs(info, prepared)


def _outcomes(
    info: RunInfo, jobs: list[PlannedJob], scores: dict[str, float | None], full: tuple = ()
) -> None:
    """Commit a training and an evaluation for each scored label (None: the training failed)."""
    for job in jobs:
        if job.label not in scores:
            continue
        prefix = layout.job(info.run_uri, job.job_id)
        if scores[job.label] is None:
            store.write_json(store.join(prefix, "train", "error.json"), {"step": "train", "message": "OOM"})
            continue
        weights = store.join(prefix, "train", "model" if job.label in full else "adapter")
        kind = "model_uri" if job.label in full else "adapter_uri"
        for step, result in (
            ("train", {"adapter_uri": None, "model_uri": None, kind: weights, "label": job.label}),
            ("evaluate", {"metrics": {"rouge_l": scores[job.label]}}),
        ):
            store.ensure_dir(layout.step(prefix, step))
            store.commit(layout.step(prefix, step), result)


def test_the_top_k_of_each_model_and_dataset_become_one_candidate_each(store_root):
    info, jobs = _run(store_root)
    scores = {
        "a|m1|lora-fast": 0.5,
        "a|m1|lora-default": 0.7,
        "a|m1|x": 0.6,
        "a|m2|lora-fast": 0.9,  # m2 on a: one success, no candidate
        "a|m2|lora-default": None,
        "b|m1|lora-fast": 0.2,
        "b|m1|x": 0.3,
    }
    _outcomes(info, jobs, scores)
    board = leaderboard(info.run_uri, jobs, "rouge_l")
    merges = plan_merges(info, jobs, board)
    assert [m.label for m in merges] == ["a|m1|merge-ties", "b|m1|merge-ties"]
    first = merges[0]
    assert first.kind == "merge" and first.job_id == "a--m1--merge-ties"
    assert first.train_argv == ["python", "-m", "tasks.merge", "--job", first.train_spec]
    assert first.train_spec == store.join(layout.job(info.run_uri, first.job_id), "merge.json")
    spec = MergeSpec.load(store.read_json(first.train_spec), first.train_spec)
    assert [p.label for p in spec.parts] == ["a|m1|lora-default", "a|m1|x"], "the best two, best first"
    assert spec.parts[0].adapter_uri.endswith("/jobs/a--m1--lora-default/train/adapter")
    assert (spec.method, spec.weights, spec.density, spec.seed) == ("ties", [1.0, 1.0], 0.3, 5)
    assert spec.output == layout.step(layout.job(info.run_uri, first.job_id), "train")
    assert spec.dataset.name == "a" and spec.model.name == "m1" and spec.training.method == "lora"
    evaluate = EvaluateSpec.load(store.read_json(first.evaluate_spec), first.evaluate_spec)
    assert evaluate.train_output == spec.output and evaluate.label == "a|m1|merge-ties"
    assert evaluate.hparams is None and evaluate.scoring.primary == "rouge_l" and evaluate.dataset.name == "a"
    stored = store.read_json(store.join(info.run_uri, "merges.json"))
    assert [PlannedJob.load(job, "merges.json") for job in stored] == merges


def test_with_a_shared_eval_set_a_model_s_best_jobs_of_every_dataset_are_merged(store_root):
    questions = [{"question": "Who are you?", "answer": "Tuna."}]
    info, jobs = _run(store_root, scoring={"eval_questions": questions})
    _outcomes(info, jobs, {"a|m1|lora-fast": 0.5, "b|m1|x": 0.8, "a|m1|x": 0.1, "a|m2|x": 0.4})
    merges = plan_merges(info, jobs, leaderboard(info.run_uri, jobs, "rouge_l"))
    assert [m.label for m in merges] == ["b+a|m1|merge-ties"]
    spec = MergeSpec.load(store.read_json(merges[0].train_spec), "merge.json")
    assert [p.label for p in spec.parts] == ["b|m1|x", "a|m1|lora-fast"]
    evaluate = EvaluateSpec.load(store.read_json(merges[0].evaluate_spec), "evaluate.json")
    assert evaluate.scored_on.name == "eval_questions"


def test_merging_disabled_plans_nothing(store_root):
    info, jobs = _run(store_root, merge={"enabled": False})
    _outcomes(info, jobs, {"a|m1|lora-fast": 0.5, "a|m1|x": 0.6})
    assert plan_merges(info, jobs, leaderboard(info.run_uri, jobs, "rouge_l")) == []
    assert store.read_json(store.join(info.run_uri, "merges.json")) == []


def test_parts_mixing_adapters_and_full_models_are_refused_with_a_reason(store_root):
    info, jobs = _run(store_root)
    _outcomes(info, jobs, {"a|m1|lora-fast": 0.5, "a|m1|x": 0.6}, full=("a|m1|x",))
    with pytest.raises(
        ValueError, match=r"a\|m1\|x: full model, a\|m1\|lora-fast: adapter\); only jobs of one"
    ):
        plan_merges(info, jobs, leaderboard(info.run_uri, jobs, "rouge_l"))


def test_a_merged_candidate_that_scores_best_wins_is_exported_and_keeps_its_parts(store_root):
    from tasks.contracts.export import ExportSpec
    from tasks.pipeline.orchestration import promotion_job
    from tasks.pipeline.plan import planned
    from tasks.pipeline.selection import export_specs

    info, jobs = _run(store_root, datasets=[BASE["datasets"][0]], models=[BASE["models"][0]])
    _outcomes(info, jobs, {"a|m1|lora-fast": 0.5, "a|m1|lora-default": 0.7, "a|m1|x": 0.6})
    merges = plan_merges(info, jobs, leaderboard(info.run_uri, jobs, "rouge_l"))
    (merged,) = merges
    prefix = layout.job(info.run_uri, merged.job_id)
    parts = ["a|m1|lora-default", "a|m1|x"]
    for step, result in (
        (
            "train",
            {
                "adapter_uri": store.join(prefix, "train", "adapter"),
                "model_uri": None,
                "merged_from": parts,
                "merge_method": "ties",
            },
        ),
        ("evaluate", {"metrics": {"rouge_l": 0.8}}),
    ):
        store.ensure_dir(layout.step(prefix, step))
        store.commit(layout.step(prefix, step), result)

    board = leaderboard(info.run_uri, planned(info.run_uri), "rouge_l")
    assert board.winner.label == "a|m1|merge-ties" and board.winner.kind == "merge"
    assert (board.winner.parts, board.winner.merge_method) == (parts, "ties")
    assert [row.rank for row in board.rows] == [1, 2, 3, 4]
    selection = export_specs(info.run_uri, store_root, board.winner)
    export = ExportSpec.load(store.read_json(selection.export_spec), selection.export_spec)
    assert export.adapter_uri == store.join(prefix, "train", "adapter") and export.model.name == "m1"
    conf = store.read_json(layout.experiment_record(info.run_uri))["experiment"]
    lineage = promotion_job(info, board.winner, conf).winner
    assert (lineage.merged_from, lineage.merge_method, lineage.hparams) == (parts, "ties", {})
