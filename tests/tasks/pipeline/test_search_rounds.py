"""Planning a search round by round against committed TrainResults: reproducible trials, a cleared
planning task re-planning the same jobs, TPE learning from round 1, halving's survivors continuing from
their round-1 checkpoints while the rest are pruned, and the budget stopping the search."""

from __future__ import annotations

import pytest

from tasks.pipeline.plan import final_jobs, plan_jobs, plan_round, planned
from tasks.search.study import load_study, study_uri
from tasks.storage import store
from tests.tasks.pipeline.search_runs import LR, commit_train, conf, fail_train, spec, start

TPE = {
    "strategy": "tpe",
    "space": {
        "learning_rate": LR,
        "lora_r": {"type": "int", "low": 4, "high": 32, "step": 4},
        "lr_scheduler": {"type": "categorical", "choices": ["cosine", "linear", "constant"]},
    },
    "max_trials": 6,
    "parallel": 2,
    "seed": 7,
}
GRID_8 = {
    "space": {
        "learning_rate": {"type": "categorical", "choices": [1e-4, 3e-4, 1e-3, 3e-3]},
        "lora_r": {"type": "int", "choices": [4, 8]},
    },
    "halving": {"eta": 3, "min_steps": 8, "max_steps": 24},
}


def _hparams(jobs) -> list[dict]:
    names = ("name", "learning_rate", "lora_r", "lr_scheduler")
    return [{k: spec(job)["hparams"][k] for k in names} for job in jobs]


def test_the_same_seed_samples_the_same_trials_and_another_seed_others(store_root):
    one, prepared = start(store_root, conf(TPE), "manual__1")
    two, _ = start(store_root, conf(TPE), "manual__2")
    other, _ = start(store_root, conf({**TPE, "seed": 8}), "manual__3")
    first, second = plan_jobs(one, prepared), plan_jobs(two, prepared)
    assert [job.label for job in first] == ["a|m1|t00", "a|m1|t01"]
    assert _hparams(first) == _hparams(second)
    assert _hparams(plan_jobs(other, prepared)) != _hparams(first)
    for job in first:
        hparams = spec(job)["hparams"]
        assert hparams["lora_r"] % 4 == 0 and 1e-5 <= hparams["learning_rate"] <= 1e-2
        assert job.round == 1 and job.final and job.trial == spec(job)["hparams"]["name"]
    assert final_jobs(one.run_uri, 1) == first


def test_tpe_round_two_learns_from_round_one_and_is_reproducible(store_root):
    runs = [start(store_root, conf(TPE), f"manual__{i}") for i in range(3)]
    losses = [(0.5, 2.0), (2.0, 0.5), (0.5, 2.0)]
    seconds = []
    for (info, prepared), pair in zip(runs, losses, strict=True):
        for job, loss in zip(plan_jobs(info, prepared), pair, strict=True):
            commit_train(info, job, loss)
        seconds.append(_hparams(plan_round(info, 2)))
    assert [h["name"] for h in seconds[0]] == ["t02", "t03"]
    assert seconds[0] == seconds[2], "same seed and same objectives: the same trials"
    assert seconds[0] != seconds[1], "TPE's second round depends on the first round's objectives"
    study = load_study(runs[0][0].run_uri)
    assert [(t.name, t.state, t.objective) for t in study.trials[:2]] == [
        ("t00", "complete", 0.5),
        ("t01", "complete", 2.0),
    ]
    assert [t.rounds for t in study.trials] == [[1], [1], [2], [2]]


def test_a_cleared_planning_task_plans_the_same_jobs(store_root):
    info, prepared = start(store_root, conf(TPE))
    first = plan_jobs(info, prepared)
    assert plan_jobs(info, prepared) == first
    for job, loss in zip(first, (1.0, 0.7), strict=True):
        commit_train(info, job, loss)
    before = store.read_json(study_uri(info.run_uri))
    second = plan_round(info, 2)
    after = store.read_json(study_uri(info.run_uri))
    assert plan_round(info, 2) == second, "the round's file is read back"
    assert store.read_json(study_uri(info.run_uri)) == after
    # A crash after the jobs were written and before the round's file: the study is as round 2 found it.
    store.remove(store.join(info.run_uri, "search", "round-2.json"))
    store.write_json(study_uri(info.run_uri), before)
    assert plan_round(info, 2) == second
    assert store.read_json(study_uri(info.run_uri)) == after
    assert [job.job_id for job in planned(info.run_uri)] == [j.job_id for j in [*first, *second]]


def test_random_search_samples_parallel_trials_a_round_and_tells_a_failed_trial(store_root):
    search = {"strategy": "random", "space": {"learning_rate": LR}, "max_trials": 5, "parallel": 2}
    info, prepared = start(store_root, conf(search))
    sizes = []
    jobs = plan_jobs(info, prepared)
    for round_number in range(2, 6):
        sizes.append(len(jobs))
        for index, job in enumerate(jobs):
            fail_train(info, job) if index == 0 else commit_train(info, job, 1.0)
        jobs = plan_round(info, round_number)
    assert sizes == [2, 2, 1, 0]
    study = load_study(info.run_uri)
    assert [t.state for t in study.trials] == ["failed", "complete", "failed", "complete", "failed"]
    assert study.finished and study.rounds == 3


def test_halving_continues_the_best_third_from_round_one_checkpoints_and_prunes_the_rest(store_root):
    info, prepared = start(store_root, conf(GRID_8, models=2))
    first = plan_jobs(info, prepared)
    assert len(first) == 16 and first[0].label == "a|m1|lr1e-4-r4"
    assert final_jobs(info.run_uri, 1) == [], "a rung that only decides who continues is not scored"
    for job in first:
        given = spec(job)
        assert given["stop_at_step"] == 8 and given["hparams"]["max_steps"] == 24 and not job.final
        assert given["checkpoints"] == store.join(info.run_uri, "jobs", job.job_id, "checkpoints")
    # The lower learning rates win; a trial's loss is the mean over its two models' jobs.
    for job in first:
        lr, r = spec(job)["hparams"]["learning_rate"], spec(job)["hparams"]["lora_r"]
        commit_train(info, job, lr * 1000 + r / 100 + (0.01 if "m2" in job.label else 0))
    second = plan_round(info, 2)
    assert [job.job_id for job in second] == [
        "a--m1--lr1e-4-r4--r2",
        "a--m2--lr1e-4-r4--r2",
        "a--m1--lr1e-4-r8--r2",
        "a--m2--lr1e-4-r8--r2",
    ]
    by_id = {job.job_id: job for job in first}
    for job in second:
        source = spec(by_id[job.job_id.removesuffix("--r2")])
        given = spec(job)
        assert given["checkpoints"] == source["checkpoints"], "continues from round 1's checkpoints"
        assert "stop_at_step" not in given and given["hparams"] == source["hparams"]
        assert given["output"].endswith(f"/jobs/{job.job_id}/train") and job.final and job.round == 2
        assert job.label == by_id[job.job_id.removesuffix("--r2")].label
    assert final_jobs(info.run_uri, 2) == second
    study = load_study(info.run_uri)
    assert sum(t.state == "pruned" for t in study.trials) == 6 and study.finished
    assert plan_round(info, 3) == [] and final_jobs(info.run_uri, 3) == []


@pytest.mark.parametrize("spent", [0.4, 0.6])
def test_the_budget_stops_halving_and_scores_the_survivors_of_the_last_round(store_root, spent):
    search = {**GRID_8, "halving": {"eta": 2, "min_steps": 4, "max_steps": 16}}
    info, prepared = start(store_root, conf(search, budget={"max_device_hours": 0.5}))
    first = plan_jobs(info, prepared)
    for index, job in enumerate(first):
        commit_train(info, job, float(index), hours=spent / len(first), steps=4)
    second = plan_round(info, 2)
    study = load_study(info.run_uri)
    if spent < 0.5:
        assert len(second) == 4 and spec(second[0])["stop_at_step"] == 8 and not second[0].final
        assert study.stopped is None
        return
    assert second == [], "over the budget: no further training"
    evaluated = final_jobs(info.run_uri, 2)
    assert [job.job_id for job in evaluated] == [job.job_id for job in first[:4]]
    assert all(job.final and job.round == 1 for job in evaluated)
    assert "stopped by the budget before round 2" in study.stopped and study.finished
    assert {job.job_id: job.final for job in planned(info.run_uri)} == {
        job.job_id: index < 4 for index, job in enumerate(first)
    }


def test_a_run_without_a_search_plans_nothing_in_later_rounds(store_root):
    experiment = conf({})
    experiment["hparams"] = [{"name": "a1", "preset": "lora-fast"}, {"name": "a2", "preset": "lora-fast"}]
    info, prepared = start(store_root, experiment)
    jobs = plan_jobs(info, prepared)
    assert "round" not in jobs[0].model_dump(mode="json"), "jobs.json reads as before searches existed"
    assert final_jobs(info.run_uri, 1) == jobs
    assert plan_round(info, 2) == [] and final_jobs(info.run_uri, 2) == []
    assert load_study(info.run_uri) is None


def test_a_mapped_task_instance_finds_its_job_in_its_round(store_root):
    from tasks.pipeline.plan import job_of_task

    info, prepared = start(store_root, conf(GRID_8))
    first = plan_jobs(info, prepared)
    for index, job in enumerate(first):
        commit_train(info, job, float(index))
    second = plan_round(info, 2)
    assert job_of_task(info.run_uri, "train", 7) == first[7].job_id
    assert job_of_task(info.run_uri, "evaluate", 0) is None, "round 1 scores nothing with halving"
    assert job_of_task(info.run_uri, "round_2.train", 1) == second[1].job_id
    assert job_of_task(info.run_uri, "round_2.evaluate", 1) == second[1].job_id
    assert job_of_task(info.run_uri, "round_3.train", 0) is None
    assert job_of_task(info.run_uri, "select_best", 0) is None
