"""KTO, ORPO, SimPO and CPO on a tiny random model: after a few steps the policy's implicit reward of
the chosen answers separates from the rejected ones', as the trainers log it. Each step sees the same
whole batch, so the logged margins of the first and last steps are comparable."""

from __future__ import annotations

import itertools

import pytest

from tasks.runtime.errors import StepError
from tasks.training.preference_types import kto_balance, kto_rows
from tests.fixtures.gpu import needs_gpu
from tests.tasks.training.test_train_types import (
    assert_only_the_last_layers_changed,
    make_job,
    preference_pairs,
    rewards,
    train_and_compare,
    trainer_for,
    write_dataset,
)

PAIRS = 8


@pytest.fixture(scope="module")
def pairs_dir(tmp_path_factory):
    return write_dataset(tmp_path_factory.mktemp("pairs") / "preference", preference_pairs(PAIRS))


@pytest.fixture(scope="module")
def unpaired_dir(tmp_path_factory):
    rows = [
        {"prompt": pair["prompt"], "completion": pair[answer], "label": answer == "chosen"}
        for pair in preference_pairs(PAIRS)
        for answer in ("chosen", "rejected")
    ]
    return write_dataset(tmp_path_factory.mktemp("unpaired") / "unpaired", rows)


def margins(history: list[dict]) -> list[float]:
    chosen, rejected = rewards(history, "rewards/chosen"), rewards(history, "rewards/rejected")
    return [c - r for c, r in zip(chosen, rejected, strict=True)]


@pytest.mark.parametrize(
    ("type_", "settings"),
    [
        ("orpo", {"preference_beta": 1.0}),
        ("simpo", {"preference_beta": 2.0, "simpo_gamma": 0.5}),
        ("cpo", {"preference_beta": 0.5}),
    ],
)
def test_reference_free_types_separate_chosen_from_rejected(
    tiny_model_dir, pairs_dir, tmp_path, type_, settings
):
    job = make_job(
        tmp_path,
        tiny_model_dir,
        pairs_dir,
        "preference",
        type_,
        "full",
        batch_size=PAIRS,
        micro_batch_size=PAIRS,
        max_steps=8,
        learning_rate=5e-3,
        **settings,
    )
    trainer, _ = trainer_for(job, tmp_path)
    assert getattr(trainer, "ref_model", None) is None  # no reference model: none loaded
    run = train_and_compare(trainer)
    gaps = margins(run["history"])
    assert len(gaps) == 8
    if type_ == "cpo":
        # CPO's rewards are summed log-probabilities: the chosen answers here are longer, so their margin
        # starts far below zero; it must climb steadily (SimPO's length-normalised rewards cross zero).
        assert gaps[-1] > gaps[0] + 3 and all(b > a for a, b in itertools.pairwise(gaps[1:])), gaps
    else:
        assert gaps[-1] > 0 and gaps[-1] > gaps[0] + 0.05, gaps
        assert rewards(run["history"], "rewards/accuracies")[-1] > 0.5
    print(type_, "margins", [round(g, 3) for g in gaps])


@pytest.mark.parametrize("kind", ["unpaired", "preference"])
def test_kto_separates_good_from_bad_answers(tiny_model_dir, pairs_dir, unpaired_dir, tmp_path, kind):
    data = unpaired_dir if kind == "unpaired" else pairs_dir  # a pair is split into a good and a bad row
    job = make_job(
        tmp_path,
        tiny_model_dir,
        data,
        kind,
        "kto",
        "lora",
        batch_size=2 * PAIRS,
        micro_batch_size=2 * PAIRS,
        max_steps=8,
        learning_rate=1e-2,
        lora_r=16,
        lora_alpha=32,
        preference_beta=0.5,
    )
    trainer, _ = trainer_for(job, tmp_path)
    assert trainer.ref_model is None  # the adapter switched off is the reference
    run = train_and_compare(trainer)
    gaps = margins(run["history"])
    assert gaps[-1] > 0 and gaps[-1] > gaps[0] + 0.05, gaps
    print("kto", kind, "margins", [round(g, 3) for g in gaps])


def test_kto_rows_from_pairs_and_a_one_sided_split_is_refused():
    pairs = preference_pairs(2)
    rows = kto_rows(pairs, "preference")
    assert [row["label"] for row in rows] == [True, False, True, False]
    assert rows[1]["completion"] == pairs[0]["rejected"]
    with pytest.raises(StepError, match=r"every KTO row is a good answer; KTO needs both"):
        kto_balance([row for row in rows if row["label"]], "train")
    with pytest.raises(StepError, match="not chat rows"):
        kto_rows([{"messages": []}], "chat")


@pytest.mark.parametrize(
    ("type_", "method", "kind"), [("kto", "lora", "unpaired"), ("orpo", "full", "preference")]
)
def test_the_train_step_saves_the_weights_and_logs_the_rewards(
    tiny_model_dir, pairs_dir, unpaired_dir, tmp_path, type_, method, kind
):
    import json

    from tasks.storage import store
    from tasks.training.trainer import train

    job = make_job(
        tmp_path, tiny_model_dir, unpaired_dir if kind == "unpaired" else pairs_dir, kind, type_, method
    )
    result = train(job.model_copy(update={"hparams": job.hparams.model_copy(update={"max_steps": 3})}))
    out = store.local_path(job.output)
    if method == "lora":
        assert result.adapter_uri and (out / "adapter" / "adapter_model.safetensors").exists()
    else:
        assert result.model_uri and result.adapter_uri is None
    assert result.steps == 3
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert any("rewards/chosen" in r and "rewards/rejected" in r for r in records)


@pytest.mark.parametrize(
    "type_", [pytest.param(t, marks=needs_gpu("bitsandbytes")) for t in ("kto", "orpo", "simpo")]
)
def test_qlora_trains_the_preference_types_over_a_4bit_base(tiny_model_dir, pairs_dir, tmp_path, type_):
    job = make_job(
        tmp_path, tiny_model_dir, pairs_dir, "preference", type_, "qlora", optim="paged_adamw_8bit"
    )
    trainer, _ = trainer_for(job, tmp_path)
    assert any(type(m).__name__ == "Linear4bit" for m in trainer.model.modules())
    run = train_and_compare(trainer)
    assert run["trainable"] and all("lora_" in name for name in run["trainable"])
    assert run["moved"] <= run["trainable"]
    assert margins(run["history"])


@pytest.mark.parametrize(
    ("type_", "layers", "checkpointing"),
    [
        ("kto", 1, False),
        ("kto", 2, True),
        ("orpo", 1, False),
        ("orpo", 2, False),
        ("simpo", 1, True),
        ("cpo", 1, False),
    ],
)
def test_freeze_trains_only_the_last_layers_with_each_preference_type(
    tiny_model_dir, pairs_dir, unpaired_dir, tmp_path, type_, layers, checkpointing
):
    """method freeze (the last `freeze_trainable_layers` layers fully trained, the rest frozen) with the
    new types, with and without gradient checkpointing: on the same batch every step, the loss falls and
    the chosen-rejected margin grows, and of the state dict only the last N layers' weights change."""
    kind = "unpaired" if type_ == "kto" else "preference"
    job = make_job(
        tmp_path,
        tiny_model_dir,
        unpaired_dir if kind == "unpaired" else pairs_dir,
        kind,
        type_,
        "freeze",
        freeze_trainable_layers=layers,
        gradient_checkpointing=checkpointing,
        batch_size=2 * PAIRS if type_ == "kto" else PAIRS,
        micro_batch_size=2 * PAIRS if type_ == "kto" else PAIRS,
        max_steps=3,
        learning_rate=5e-3,
        # ORPO's default beta 0.1 leaves the SFT term in charge for 3 steps; 1.0 as in its test above.
        **({"preference_beta": 1.0} if type_ == "orpo" else {}),
    )
    trainer, _ = trainer_for(job, tmp_path)
    run = train_and_compare(trainer)
    assert_only_the_last_layers_changed(run, layers)
    losses, gaps = run["losses"], margins(run["history"])
    print(
        type_,
        "freeze",
        layers,
        "losses",
        [round(x, 4) for x in losses],
        "margins",
        [round(g, 4) for g in gaps],
    )
    assert len(losses) == 3 and losses[-1] < losses[0], losses
    assert gaps[-1] > gaps[0], gaps
