"""A real Airflow run (dag.test) of a search with successive halving and a merged candidate on the tiny
random model: the later round continues the survivors from their checkpoints, the rest are pruned, the
finalists are merged, and the leaderboard, the study and the tasks' states say so."""

from __future__ import annotations

import pytest

from tasks.contracts.selection import Leaderboard
from tasks.contracts.train import TrainResult
from tasks.storage import layout, store

# The DAG fixture (freshly parsed per test) and the task states of a run, as the whole-run test has them.
from tests.dags.test_finetune_experiment import _states, dag  # noqa: F401
from tests.fixtures.confs import tiny_conf


def _train(run_uri: str, job_id: str) -> TrainResult:
    prefix = layout.step(layout.job(run_uri, job_id), "train")
    return TrainResult.model_validate(store.committed_result(prefix))


@pytest.mark.slow
def test_halving_continues_survivors_prunes_the_rest_and_merges_the_finalists(
    dag,  # noqa: F811  (the fixture imported above)
    tiny_model_dir,
    store_root,
):
    conf = tiny_conf(
        tiny_model_dir,
        name="tiny-search",
        hparams=[{"name": "base", "preset": "lora-fast", "save_steps": 2}],
        search={
            "space": {
                "learning_rate": {"type": "float", "choices": [1e-4, 1e-3]},
                # One LoRA rank: TIES merges adapters of one rank (the merge step refuses others, naming svd).
                "lr_scheduler": {"type": "categorical", "choices": ["linear", "cosine"]},
            },
            "halving": {"eta": 2, "min_steps": 2, "max_steps": 4},
        },
        merge={"enabled": True, "top_k": 2, "method": "ties"},
        scoring={**tiny_conf(tiny_model_dir)["scoring"], "max_samples": 4, "compare_base": False},
        export={"enabled": False},
        promotion={"registry_name": "tiny-search"},
    )
    run = dag.test(run_conf=conf)
    assert str(run.state) == "success"
    states = _states(run)
    assert states["train"].count("success") == 4
    assert states["evaluate"] == ["skipped"], "round 1 is a rung: nothing of it is scored"
    assert states["round_2.train"] == ["success", "success"] and len(states["round_2.evaluate"]) == 2
    assert states["merge"] == ["success"] and states["score_merge"] == ["success"]
    assert states["approve_promotion"] == ["skipped"] and states["promote"] == ["success"]

    run_uri = layout.run(store_root, "tiny-search", run.run_id)
    board = Leaderboard.model_validate(store.read_json(store.join(run_uri, "leaderboard.json")))
    by_status: dict[str, list] = {}
    for row in board.rows:
        by_status.setdefault(row.status, []).append(row)
    assert len(by_status["pruned"]) == 2 and len(by_status["succeeded"]) == 3
    assert all(row.stopped == "stopped by halving at step 2" for row in by_status["pruned"])
    finalists = [row for row in by_status["succeeded"] if row.kind == "train"]
    for row in finalists:
        assert row.round == 2 and row.train.steps == 4
        # Continued from round 1's committed checkpoint: no step trained twice.
        assert row.train.resumed_from_step == 2
        first = _train(run_uri, row.job_id.removesuffix("--r2"))
        assert (first.steps, first.stopped) == (2, "halving: stopped at step 2 of 4")
        assert row.device_hours >= first.device_hours > 0
    (merged,) = [row for row in by_status["succeeded"] if row.kind == "merge"]
    assert sorted(merged.parts) == sorted(row.label for row in finalists) and merged.merge_method == "ties"
    assert board.search == "grid with successive halving: 4 trials in 2 rounds, 2 pruned by halving"
    assert board.winner.rank == 1 and board.device_hours > 0
