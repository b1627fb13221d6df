"""The leaderboard of a search: one row per trial-job at its furthest round, halving's pruned trials
listed as pruned (not failed, never the winner) with their validation loss, and the search's line."""

from __future__ import annotations

from tasks.pipeline.plan import final_jobs, plan_jobs, plan_round, planned
from tasks.pipeline.selection import leaderboard
from tests.tasks.pipeline.search_runs import commit_evaluate, commit_train, conf, start
from tests.tasks.pipeline.test_search_rounds import GRID_8


def test_a_halving_run_ranks_its_last_rung_and_lists_the_pruned_trials(store_root):
    info, prepared = start(store_root, conf(GRID_8))
    first = plan_jobs(info, prepared)
    for index, job in enumerate(first):
        commit_train(info, job, 1.0 + index / 10, hours=0.25)
    second = plan_round(info, 2)
    assert len(second) == 2
    for job, score in zip(second, (0.4, 0.6), strict=True):
        # A round-2 result carries round 1's training time on: its checkpoints' elapsed time.
        commit_train(info, job, 0.9, hours=0.5, steps=24)
        commit_evaluate(info, job, {"rouge_l": score})
    plan_round(info, 3)
    board = leaderboard(info.run_uri, planned(info.run_uri), "rouge_l")
    assert len(board.rows) == 8, "one row per trial"
    ranked, pruned = board.rows[:2], board.rows[2:]
    assert [row.label for row in ranked] == ["a|m1|lr1e-4-r8", "a|m1|lr1e-4-r4"]
    assert board.winner.job_id == "a--m1--lr1e-4-r8--r2" and board.winner.round == 2
    assert all(row.status == "succeeded" and row.device_hours == 0.5 for row in ranked), "not summed"
    assert {row.status for row in pruned} == {"pruned"} and board.failed == []
    assert pruned[0].stopped == "stopped by halving at step 8" and pruned[0].round == 1
    assert pruned[0].train.eval_loss is not None and pruned[0].rank is None and pruned[0].device_hours == 0.25
    assert board.device_hours == 6 * 0.25 + 2 * 0.5
    assert board.search == "grid with successive halving: 8 trials in 2 rounds, 6 pruned by halving"


def test_the_budget_stop_ranks_the_survivors_it_scored(store_root):
    search = {**GRID_8, "halving": {"eta": 4, "min_steps": 4, "max_steps": 64}}
    info, prepared = start(store_root, conf(search, budget={"max_device_hours": 1}))
    first = plan_jobs(info, prepared)
    for index, job in enumerate(first):
        commit_train(info, job, float(index), hours=0.2, steps=4)
    assert plan_round(info, 2) == []
    scored = final_jobs(info.run_uri, 2)
    for job in scored:
        commit_evaluate(info, job, {"rouge_l": 0.5})
    board = leaderboard(info.run_uri, planned(info.run_uri), "rouge_l")
    assert [row.job_id for row in board.rows if row.status == "succeeded"] == [job.job_id for job in scored]
    assert sum(row.status == "pruned" for row in board.rows) == 6
    assert board.search.endswith("stopped by the budget before round 2: 1.6 of 1 device-hours used")


def test_a_run_without_a_search_has_no_search_line_and_no_rounds(store_root):
    experiment = conf({})
    info, prepared = start(store_root, experiment)
    (job,) = plan_jobs(info, prepared)
    commit_train(info, job, 1.0)
    commit_evaluate(info, job, {"rouge_l": 0.5})
    board = leaderboard(info.run_uri, planned(info.run_uri), "rouge_l")
    assert board.search is None and board.winner.round is None and board.winner.device_hours == 0.1
