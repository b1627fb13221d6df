"""The vision training types, as XTuner's LLaVA recipes train a vision-language model:

- vlm_pretrain (method full): projector pretraining. The vision tower and the language model are frozen;
  only `multi_modal_projector` trains, learning to map image features into the language model's space.
- vlm_sft: instruction tuning. The vision tower stays frozen; with method lora, LoRA adapters go on the
  language model's linear layers (the catalog's lora_target_modules, or all of them) and the projector
  trains whole beside them (PEFT `modules_to_save`, so it is saved with the adapter); with method full,
  the language model and the projector train whole.

Rows are vision rows (`tasks.training.vision_inputs` tokenizes them with the processor, labels only the
answers and reads the images a batch at a time); the plain transformers Trainer runs them, TRL's SFT
vision collator labelling every turn or only a single completion. Heavy imports inside functions.
"""

from __future__ import annotations

import logging
from typing import Any

from tasks.config.hparams import ResolvedHParams
from tasks.contracts.train import TrainSpec
from tasks.runtime.errors import StepError
from tasks.training.base_models import weights_location
from tasks.training.peft_methods import Prepared
from tasks.training.vision_inputs import VisionCollator, fitting_rows, load_processor, load_vision_model

log = logging.getLogger("tunerflow.train")

PROJECTOR = "multi_modal_projector"
# Where each family keeps its parts (LLaVA: model.vision_tower, model.language_model; Qwen2-VL: model.visual,
# model.language_model, whose projector is the visual merger).
VISION_PARTS = ("vision_tower", "visual")
LANGUAGE_PART = "language_model"


def _part(name: str, parts: tuple[str, ...]) -> bool:
    return any(piece in parts for piece in name.split("."))


def projector_names(model: Any) -> list[str]:
    """The projector's parameters: LLaVA's `multi_modal_projector`, or Qwen2-VL's `visual.merger`."""
    names = [name for name, _ in model.named_parameters() if PROJECTOR in name.split(".")]
    if not names:
        names = [name for name, _ in model.named_parameters() if ".merger." in f".{name}"]
    if not names:
        raise StepError("this model has no multi_modal_projector (nor a visual merger) to train")
    return names


def freeze_for_projector(model: Any) -> list[str]:
    """Only the projector trains (vlm_pretrain); returns the names of the trained parameters."""
    trained = set(projector_names(model))
    for name, parameter in model.named_parameters():
        parameter.requires_grad = name in trained
    return sorted(trained)


def freeze_vision_tower(model: Any) -> list[str]:
    """Everything but the vision tower trains (vlm_sft with method full; the projector inside Qwen2-VL's
    `visual` trains too)."""
    projector = set(projector_names(model))
    trained = []
    for name, parameter in model.named_parameters():
        parameter.requires_grad = name in projector or not _part(name, VISION_PARTS)
        if parameter.requires_grad:
            trained.append(name)
    return trained


def language_linear_names(model: Any, targets: list[str] | str) -> list[str]:
    """The full names of the language model's linear layers LoRA goes on (the LM head excluded): the
    module names in `targets`, or every one for `all-linear`. Full names, because the vision tower has
    layers of the same short names (q_proj, k_proj, ...)."""
    import torch

    wanted = None if targets == "all-linear" else set([targets] if isinstance(targets, str) else targets)
    names = [
        name
        for name, module in model.named_modules()
        if isinstance(module, torch.nn.Linear)
        and LANGUAGE_PART in name.split(".")
        and (wanted is None or name.rsplit(".", 1)[-1] in wanted)
    ]
    if not names:
        raise StepError(f"lora_target_modules {targets!r} names no linear layer of the language model")
    return names


def vision_lora(model: Any, hp: ResolvedHParams) -> Any:
    """The model with LoRA on its language model and the projector trained whole (saved with the adapter)."""
    from peft import LoraConfig, get_peft_model

    projector = PROJECTOR if any(PROJECTOR in n.split(".") for n, _ in model.named_parameters()) else "merger"
    config = LoraConfig(
        r=hp.lora_r,
        lora_alpha=hp.lora_alpha,
        lora_dropout=hp.lora_dropout,
        target_modules=language_linear_names(model, hp.lora_target_modules),
        modules_to_save=[projector],
        task_type="CAUSAL_LM",
    )
    for parameter in model.parameters():
        parameter.requires_grad = False
    return get_peft_model(model, config)


def prepare_vision(model: Any, training_type: str, method: str, hp: ResolvedHParams) -> Prepared:
    """The model as this type and method train it."""
    if training_type == "vlm_pretrain":
        trained = freeze_for_projector(model)
    elif method == "lora":
        model = vision_lora(model, hp)
        trained = [name for name, p in model.named_parameters() if p.requires_grad]
    else:
        trained = freeze_vision_tower(model)
    count = sum(p.numel() for _, p in model.named_parameters() if p.requires_grad)
    log.info("%s (%s): %d trainable parameters in %d tensors", training_type, method, count, len(trained))
    if hp.gradient_checkpointing:
        model.enable_input_require_grads()  # frozen embeddings feed the checkpointed layers otherwise
    return Prepared(model)


def build_vision_trainer(
    job: TrainSpec,
    train_rows: list[dict[str, Any]],
    validation_rows: list[dict[str, Any]],
    args: dict[str, Any],
    callbacks: list[Any],
    precision: str,
) -> tuple[Any, Any]:
    """(trainer, processor) for a vision job; `args` are the TrainingArguments build_trainer chose."""
    import torch
    from transformers import Trainer, TrainingArguments

    hp, training, entry = job.hparams, job.training, job.model
    if job.dataset.kind != "vision":
        raise StepError(f"{training.type} trains on vision rows, not {job.dataset.kind} rows")
    processor = load_processor(weights_location(entry, job.store_root), entry)
    # Weights that train stay float32 (mixed precision autocasts); a frozen base under LoRA may sit in
    # the compute dtype.
    dtype = (
        torch.float32
        if training.method == "full" or precision == "fp32"
        else {"bf16": torch.bfloat16, "fp16": torch.float16}[precision]
    )
    model = load_vision_model(entry, job.store_root, dtype)
    prepared = prepare_vision(model, training.type, training.method, hp)
    train_data = fitting_rows(processor, train_rows, hp.max_seq_length, "train")
    eval_data = fitting_rows(processor, validation_rows, hp.max_seq_length, "validation")
    config = TrainingArguments(**args, remove_unused_columns=False)
    trainer = Trainer(
        model=prepared.model,
        args=config,
        train_dataset=train_data,
        eval_dataset=eval_data or None,
        data_collator=VisionCollator(processor, hp.max_seq_length),
        callbacks=callbacks,
    )
    trainer.tunerflow_prepared = prepared
    return trainer, processor
