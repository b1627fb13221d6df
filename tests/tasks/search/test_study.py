"""The study on its own, without a run: trial names, grid points, Optuna's samples rebuilt from the
recorded study (the same seed and record give the same trials), telling losses, halving's survivors and
pruning, the budget stop, and device-hours counted once per label across rounds."""

from __future__ import annotations

import pytest

from tasks.config.search import SearchConfig
from tasks.contracts.train import TrainResult
from tasks.search.jobs import device_hours_by_label
from tasks.search.rounds import advance, start, survivors, tell
from tasks.search.study import StudyRecord, TrialRecord, sample
from tasks.search.trials import grid_points

SPACE = {
    "learning_rate": {"type": "float", "low": 1e-5, "high": 1e-3, "log": True},
    "lora_r": {"type": "int", "low": 4, "high": 32, "step": 4},
}


def _search(**fields) -> SearchConfig:
    return SearchConfig.model_validate({"space": SPACE, "max_trials": 6, "parallel": 2, **fields})


def test_grid_points_are_named_after_their_values_in_the_spaces_order():
    search = SearchConfig.model_validate(
        {
            "space": {
                "learning_rate": {"type": "categorical", "choices": [1e-4, 3e-4]},
                "lora_r": {"type": "int", "choices": [4, 8]},
            }
        }
    )
    assert grid_points(search) == [
        ("lr1e-4-r4", {"learning_rate": 1e-4, "lora_r": 4}),
        ("lr1e-4-r8", {"learning_rate": 1e-4, "lora_r": 8}),
        ("lr3e-4-r4", {"learning_rate": 3e-4, "lora_r": 4}),
        ("lr3e-4-r8", {"learning_rate": 3e-4, "lora_r": 8}),
    ]


@pytest.mark.parametrize("strategy", ["random", "tpe"])
def test_a_rebuilt_study_samples_the_same_trials_for_the_same_record_and_seed(strategy):
    search = _search(strategy=strategy, seed=3)
    first, _ = start(search, ["g"])
    again, _ = start(search, ["g"])
    assert [t.params for t in first.trials] == [t.params for t in again.trials]
    assert [t.name for t in first.trials] == ["t00", "t01"]
    for trial in first.trials:
        assert 1e-5 <= trial.params["learning_rate"] <= 1e-3 and trial.params["lora_r"] % 4 == 0
    other, _ = start(_search(strategy=strategy, seed=4), ["g"])
    assert [t.params for t in other.trials] != [t.params for t in first.trials]


def test_tpe_told_losses_samples_round_two_from_the_record_alone():
    search = _search(strategy="tpe", seed=1)
    study, _ = start(search, ["g"])
    tell(study, 1, {"t00": [0.5], "t01": [2.0]})
    assert [(t.state, t.objective) for t in study.trials] == [("complete", 0.5), ("complete", 2.0)]
    # What a cleared planning task does: rebuild from the JSON record and ask again.
    record = StudyRecord.model_validate(study.model_dump(mode="json"))
    assert sample(study, search, 2, 2) == sample(record, search, 2, 2)


def test_a_trial_with_a_job_lacking_its_loss_failed_and_never_survives_halving():
    study = StudyRecord(strategy="grid", seed=0, halving=True)
    study.trials = [TrialRecord(name=n, params={}, asked_in=1, rounds=[1]) for n in ("a", "b", "c", "d")]
    tell(study, 1, {"a": [0.9, 0.7], "b": [0.2, None], "c": [0.1, 0.1], "d": [1.0, 1.0]})
    assert {t.name: t.state for t in study.trials} == {
        "a": "complete", "b": "failed", "c": "complete", "d": "complete",
    }  # fmt: skip
    assert study.trial("a").objective == pytest.approx(0.8)
    assert survivors(study, 1, eta=2) == ["c", "a"]  # best half of 4, by mean loss


def test_halving_continues_survivors_to_the_next_rung_and_prunes_the_rest():
    search = SearchConfig.model_validate(
        {
            "space": {"learning_rate": {"type": "categorical", "choices": [1e-4, 2e-4, 5e-4, 1e-3]}},
            "halving": {"eta": 2, "min_steps": 4, "max_steps": 16},
        }
    )
    study, first = start(search, ["g"])
    assert (len(first.train), first.stop_at_step, first.final) == (4, 4, False)
    losses = {"lr1e-4": [3.0], "lr2e-4": [2.0], "lr5e-4": [1.0], "lr1e-3": [1.5]}
    second = advance(study, search, 2, losses, spent=0.0, max_device_hours=None)
    assert (second.train, second.stop_at_step, second.final) == (["lr5e-4", "lr1e-3"], 8, False)
    assert {t.name: t.state for t in study.trials if t.state == "pruned"} == {
        "lr1e-4": "pruned", "lr2e-4": "pruned",
    }  # fmt: skip
    third = advance(study, search, 3, {"lr5e-4": [0.9], "lr1e-3": [0.8]}, 0.0, None)
    assert (third.train, third.stop_at_step, third.final) == (["lr1e-3"], None, True)
    assert study.finished and study.trial("lr1e-3").rounds == [1, 2, 3]


def test_the_budget_stops_the_search_and_scores_the_last_rounds_survivors():
    search = SearchConfig.model_validate(
        {
            "space": {"learning_rate": {"type": "categorical", "choices": [1e-4, 2e-4, 5e-4, 1e-3]}},
            "halving": {"eta": 2, "min_steps": 4, "max_steps": 16},
        }
    )
    study, _ = start(search, ["g"])
    losses = {"lr1e-4": [3.0], "lr2e-4": [2.0], "lr5e-4": [1.0], "lr1e-3": [1.5]}
    decision = advance(study, search, 2, losses, spent=2.5, max_device_hours=2.0)
    assert decision.train == [] and decision.evaluate_previous == ["lr5e-4", "lr1e-3"]
    assert study.finished and study.stopped.startswith("stopped by the budget before round 2: 2.5 of 2")


def _result(hours: float | None) -> TrainResult:
    return TrainResult.model_construct(device_hours=hours)


def test_device_hours_count_a_labels_furthest_round_not_the_sum_of_rounds():
    results = [("a", _result(0.1)), ("b", _result(0.1)), ("a", _result(0.4))]
    results += [("c", None), ("d", _result(None))]  # not committed; committed without a time
    assert device_hours_by_label(results) == {"a": 0.4, "b": 0.1}
