"""The stops on a tiny random model: successive halving's stop at a step and its continuation, early
stopping with the best checkpoint kept, the time limit, and the device-hours every result records."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from tasks.contracts.train import TrainSpec
from tasks.runtime.errors import StepError
from tasks.runtime.step import execute
from tasks.storage import store
from tasks.training import checkpoints
from tasks.training.trainer import train
from tests.tasks.training.test_trainer import dataset_dir, loss_curve, make_job, metric_records, paths, stored

__all__ = ["dataset_dir"]  # a fixture, imported for the tests below


def trial_round(
    base: Path, model_dir: Path, data_dir: Path, name: str, stop_at_step: int | None, **hparams
) -> TrainSpec:
    """One round of a trial as the planner writes it: its own output, the first round's checkpoints."""
    job = make_job(base, model_dir, data_dir, **hparams)
    return TrainSpec.model_validate(
        {
            **stored(job),
            "output": (base / name / "train").as_uri(),
            "checkpoints": (base / "trial" / "checkpoints").as_uri(),
            "stop_at_step": stop_at_step,
        }
    )


def learning_rates(out: Path) -> dict[int, float]:
    return {r["step"]: r["learning_rate"] for r in metric_records(out) if "learning_rate" in r}


def checkpoint_elapsed(root: Path, step: int) -> float:
    return store.read_json(store.to_uri(root / f"checkpoint-{step}" / "manifest.json"))["result"]["elapsed_s"]


def assert_cpu_device_hours(result: dict, elapsed_before: float) -> None:
    """devices x training hours over every try and round: at least the time the checkpoint carried."""
    import torch

    assert result["device"] == "cpu" and result["devices"] == torch.get_num_threads()
    seconds = result["device_hours"] * 3600 / result["devices"]
    assert elapsed_before < seconds <= elapsed_before + result["runtime_s"] + 0.01


def test_halving_stops_at_a_step_and_the_next_round_continues_the_schedule_without_repeating(
    tiny_model_dir, dataset_dir, tmp_path
):
    hparams = {"max_steps": 6, "save_steps": 4, "save_total_limit": 1, "merge_adapter": False}
    first = execute("train", train, trial_round(tmp_path, tiny_model_dir, dataset_dir, "r1", 2, **hparams))
    root = tmp_path / "trial" / "checkpoints"
    assert first["steps"] == 2 and first["stopped"] == "halving: stopped at step 2 of 6"
    # Step 2 is no save step: the stop itself saved, committed and evaluated there.
    assert [step for step, _ in checkpoints.committed(root)] == [2] and first["checkpoints"]["steps"] == [2]
    r1 = tmp_path / "r1" / "train"
    evals = [r for r in metric_records(r1) if "eval_loss" in r]
    assert [r["step"] for r in evals] == [2] and first["eval_loss"] == pytest.approx(evals[0]["eval_loss"])
    assert (r1 / "adapter" / "adapter_model.safetensors").exists()
    first_round_s = checkpoint_elapsed(root, 2)

    second_job = trial_round(tmp_path, tiny_model_dir, dataset_dir, "r2", 4, **hparams)
    second = execute("train", train, second_job)
    assert second["resumed_from_step"] == 2 and second["steps"] == 4
    assert second["stopped"] == "halving: stopped at step 4 of 6"
    assert [step for step, _ in checkpoints.committed(root)] == [4], "save_total_limit 1 keeps the newest"
    r2 = tmp_path / "r2" / "train"
    assert [step for step, _ in loss_curve(r2)] == [1, 2, 3, 4]
    assert [r["step"] for r in metric_records(r2) if "eval_loss" in r] == [2, 4]
    assert_cpu_device_hours(second, first_round_s)

    # The schedule spans max_steps in every round: the rates are an uninterrupted 6-step run's.
    whole = make_job(tmp_path / "whole", tiny_model_dir, dataset_dir, **hparams)
    execute("train", train, whole)
    reference = learning_rates(paths(whole).out)
    assert learning_rates(r2)[3] == pytest.approx(reference[3], rel=1e-9)
    assert [learning_rates(r2)[s] for s in (1, 2, 4)] == pytest.approx([reference[s] for s in (1, 2, 4)])


def test_early_stopping_stops_on_a_rising_validation_loss_and_keeps_the_best_checkpoint(
    tiny_model_dir, dataset_dir, tmp_path
):
    import torch
    from safetensors.torch import load_file

    # A learning rate far too high: the validation loss rises after the first update.
    job = make_job(
        tmp_path,
        tiny_model_dir,
        dataset_dir,
        learning_rate=0.5,
        max_steps=12,
        eval_steps=1,
        save_steps=2,
        save_total_limit=1,
        early_stopping_patience=2,
        merge_adapter=False,
    )
    result = execute("train", train, job)
    here = paths(job)
    evals = {r["step"]: r["eval_loss"] for r in metric_records(here.out) if "eval_loss" in r}
    best = min(evals, key=lambda step: (evals[step], step))
    stop = max(evals)
    assert stop < 12 and result["steps"] == stop and result["best_step"] == best
    assert [s for s in evals if s > best] == [best + 1, best + 2], "stopped after 2 evaluations without gain"
    assert result["stopped"] == (
        f"early stopping at step {stop}: validation loss did not improve by more than 0.0 for 2 "
        f"evaluations; best step {best} kept"
    )
    assert result["eval_loss"] == pytest.approx(evals[best])
    # The best checkpoint was saved though no save step, and outlived save_total_limit 1.
    assert best in [step for step, _ in checkpoints.committed(here.checkpoints)]
    saved = load_file(here.out / "adapter" / "adapter_model.safetensors")
    kept = load_file(here.checkpoints / f"checkpoint-{best}" / "adapter_model.safetensors")
    assert saved.keys() == kept.keys()
    for name in saved:
        torch.testing.assert_close(saved[name], kept[name], rtol=0, atol=0)


def test_early_stopping_without_validation_rows_is_refused_before_training(tiny_model_dir, tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    messages = [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]
    row = {"id": "train:0", "messages": messages}
    (data / "train.jsonl").write_text(json.dumps(row) + "\n")
    (data / "validation.jsonl").write_text("")
    job = make_job(tmp_path, tiny_model_dir, data, early_stopping_patience=2)
    with pytest.raises(StepError, match="hparams 't': early_stopping_patience needs a validation split"):
        train(job)
    assert not list(paths(job).checkpoints.glob("checkpoint-*"))


def test_the_time_limit_stops_saves_and_scores_and_a_longer_limit_resumes(
    tiny_model_dir, dataset_dir, tmp_path
):
    hparams = {"max_steps": 4, "save_steps": 4, "merge_adapter": False}
    job = trial_round(tmp_path, tiny_model_dir, dataset_dir, "try1", None, max_train_minutes=1e-4, **hparams)
    first = execute("train", train, job)
    assert first["stopped"] == "time limit of 0.0001 min reached at step 1" and first["steps"] == 1
    assert store.is_committed(job.output) and first["adapter_uri"] and math.isfinite(first["eval_loss"])
    root = tmp_path / "trial" / "checkpoints"
    assert [step for step, _ in checkpoints.committed(root)] == [1]

    longer = {**hparams, "max_train_minutes": 60}
    again = execute(
        "train", train, trial_round(tmp_path, tiny_model_dir, dataset_dir, "try2", None, **longer)
    )
    assert again["resumed_from_step"] == 1 and again["steps"] == 4 and again["stopped"] is None
    assert_cpu_device_hours(again, checkpoint_elapsed(root, 1))


def test_a_retry_resumed_at_its_stop_trains_nothing_more(tiny_model_dir, dataset_dir, tmp_path):
    """The try died after its stop's checkpoint was committed, before its outputs were: the retry resumes
    there and reports that step, not one more (the Trainer would train a step before checking a stop)."""
    hparams = {"max_steps": 6, "save_steps": 4, "merge_adapter": False}
    job = trial_round(tmp_path, tiny_model_dir, dataset_dir, "r1", 2, **hparams)
    first = execute("train", train, job)
    store.remove(store.join(job.output, store.MANIFEST))
    again = execute("train", train, job)
    assert again["resumed_from_step"] == 2 and again["steps"] == 2 and again["stopped"] == first["stopped"]
    assert again["eval_loss"] == first["eval_loss"]
    assert again["train_loss"] == pytest.approx(first["train_loss"], abs=1e-4)  # from the logged losses
    assert [step for step, _ in checkpoints.committed(tmp_path / "trial" / "checkpoints")] == [2]
