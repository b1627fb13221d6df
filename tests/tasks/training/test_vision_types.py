"""The vision types on a tiny random LLaVA (built from a config here) and a few generated images:
projector pretraining moves the projector only, instruction tuning LoRA on the language model and the
projector, the vision tower never; the losses go down, and the trained model is scored."""

from __future__ import annotations

from pathlib import Path

import pytest

from tasks.data.formats import convert
from tasks.data.vision_images import resolve_images
from tests.fixtures.tiny_llava import build_tiny_llava, write_images
from tests.tasks.training.test_train_types import make_job, train_and_compare, trainer_for, write_dataset

VISION = {
    "learning_rate": 1e-2,
    "max_steps": 10,
    "batch_size": 4,
    "micro_batch_size": 4,
    "max_seq_length": 64,
}


@pytest.fixture(scope="module")
def llava(tmp_path_factory) -> dict[str, Path]:
    base = tmp_path_factory.mktemp("llava")
    model = build_tiny_llava(base / "model")
    rows = [resolve_images(convert(row, "llava"), base) for row in write_images(base / "images")]
    return {"model": model, "data": write_dataset(base / "data", rows, rows[:2]), "base": base}


def groups(names: set[str]) -> set[str]:
    """Which parts of the model the parameter names are in."""
    found = set()
    for name in names:
        for part in ("vision_tower", "multi_modal_projector", "language_model", "lm_head"):
            if part in name:
                found.add(part + (":lora" if "lora_" in name else ""))
    return found


def test_projector_pretraining_moves_only_the_projector(llava, tmp_path):
    # Only the projector moves, through a random language model: a larger step shows it learning.
    hp = {**VISION, "learning_rate": 5e-2}
    job = make_job(tmp_path, llava["model"], llava["data"], "vision", "vlm_pretrain", "full", **hp)
    trainer, _ = trainer_for(job, tmp_path)
    result = train_and_compare(trainer)
    print("vlm_pretrain losses", [round(x, 3) for x in result["losses"]])
    assert groups(result["trainable"]) == {"multi_modal_projector"}
    assert groups(result["moved"]) == {"multi_modal_projector"}
    losses = result["losses"]
    assert sum(losses[-3:]) / 3 < losses[0]


def test_instruction_tuning_moves_lora_on_the_language_model_and_the_projector(llava, tmp_path):
    job = make_job(tmp_path, llava["model"], llava["data"], "vision", "vlm_sft", "lora", **VISION)
    trainer, _ = trainer_for(job, tmp_path)
    result = train_and_compare(trainer)
    print("vlm_sft losses", [round(x, 3) for x in result["losses"]])
    assert groups(result["moved"]) == {"language_model:lora", "multi_modal_projector"}
    assert not any("vision_tower" in name for name in result["trainable"])
    assert result["losses"][-1] < result["losses"][0]


@pytest.mark.parametrize(("type_", "method"), [("vlm_sft", "lora"), ("vlm_pretrain", "full")])
def test_the_train_step_saves_the_model_with_its_processor_and_it_is_scored(llava, tmp_path, type_, method):
    from tasks.contracts.evaluate import EvaluateSpec
    from tasks.scoring.evaluation import evaluate
    from tasks.storage import store
    from tasks.training.trainer import train

    hp = {**VISION, "max_steps": 4, "learning_rate": 5e-2 if method == "full" else 1e-2}
    job = make_job(tmp_path, llava["model"], llava["data"], "vision", type_, method, **hp)
    result = train(job)
    weights = store.local_path(result.adapter_uri or result.model_uri)
    assert (weights / "preprocessor_config.json").exists() and result.steps == 4
    assert result.eval_loss is not None and result.merged_uri is None
    if method == "lora":  # the projector trains whole beside the adapter, and is saved with it
        from safetensors.torch import load_file

        saved = load_file(weights / "adapter_model.safetensors")
        assert any("multi_modal_projector" in key for key in saved)
        assert not any("vision_tower" in key for key in saved)
    dataset = {
        "name": "d",
        "kind": "vision",
        "uri": llava["data"].as_uri(),
        "counts": {"train": 8, "validation": 2},
    }
    spec = EvaluateSpec(
        store_root=job.store_root,
        job_id="j",
        label=job.label,
        output=store.join(job.store_root, "jobs", "j", "evaluate"),
        dataset=dataset,
        model=job.model,
        scoring={
            "metrics": ["exact_match", "rouge_l", "eval_loss"],
            "primary": "rouge_l",
            "max_new_tokens": 8,
        },
        trained={"adapter_uri": result.adapter_uri, "model_uri": result.model_uri},
    )
    scored = evaluate(spec)
    base = evaluate(spec.model_copy(update={"trained": None, "reference": True}))
    print(type_, "scores", scored.metrics, "base", base.metrics)
    # The trained weights are what is scored: their answer loss is below the untouched base model's.
    assert scored.metrics["eval_loss"] < base.metrics["eval_loss"]
    assert scored.n == 2 and set(scored.metrics) == {"exact_match", "rouge_l", "eval_loss"}
    assert scored.metrics["eval_loss"] > 0
    predictions = store.local_path(store.join(spec.output, "predictions.jsonl")).read_text().splitlines()
    assert len(predictions) == 2


def test_full_instruction_tuning_moves_the_language_model_and_projector_never_the_vision_tower(
    llava, tmp_path
):
    hp = {**VISION, "learning_rate": 5e-3, "max_steps": 6}
    job = make_job(tmp_path, llava["model"], llava["data"], "vision", "vlm_sft", "full", **hp)
    trainer, _ = trainer_for(job, tmp_path)
    result = train_and_compare(trainer)
    assert groups(result["moved"]) == {"language_model", "multi_modal_projector"}
    assert not any("vision_tower" in name for name in result["trainable"])
    assert result["losses"][-1] < result["losses"][0]
