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
