"""What is trained and how: the training type and method, which pairs this build runs, which dataset
kinds each type learns from, and whether a CUDA device will be there (judged without torch)."""

from __future__ import annotations

import os
from typing import Literal

from pydantic import Field, model_validator

from tasks.config.base import StrictModel
from tasks.scoring import plugins as scoring_plugins

TrainingType = Literal[
    "pretrain", "sft", "dpo", "kto", "orpo", "simpo", "cpo", "grpo", "vlm_pretrain", "vlm_sft"
]
TrainingMethod = Literal[
    "full", "lora", "qlora", "adalora", "ia3", "prompt_tuning", "prefix_tuning", "p_tuning", "freeze"
]

# The methods whose output is a PEFT adapter over the base model (the others save a whole model), the
# adapters that merge into the base weights, and the prompt-learning ones (virtual tokens: no weights to
# merge, so a conf that exports or merges them is refused).
ADAPTER_METHODS = ("lora", "qlora", "adalora", "ia3", "prompt_tuning", "prefix_tuning", "p_tuning")
PROMPT_METHODS = ("prompt_tuning", "prefix_tuning", "p_tuning")
MERGEABLE_ADAPTERS = ("lora", "qlora", "adalora", "ia3")

# The training types added with TRL's KTO, ORPO, CPO (SimPO) and GRPO trainers.
TRL_TYPES = ("kto", "orpo", "simpo", "cpo", "grpo")
# Which (type, method) pairs this build can run, and why the others are refused up front.
_EVERY = ("full", "lora", "qlora", "adalora", "ia3", "prompt_tuning", "prefix_tuning", "p_tuning", "freeze")
ALLOWED_METHODS: dict[str, tuple[str, ...]] = {
    "pretrain": ("full", "freeze"),
    "sft": _EVERY,
    "dpo": _EVERY,
    # TRL's KTO, ORPO, CPO and GRPO trainers score completions with the model's own forward pass and take
    # a PEFT config or a whole model; the prompt-learning methods' virtual tokens shift the positions
    # those trainers compute log-probabilities at, and IA3/AdaLoRA are untested there, so the weight
    # methods alone are offered.
    **dict.fromkeys(TRL_TYPES, ("full", "lora", "qlora", "freeze")),
    # Vision-language models, as XTuner's LLaVA recipes train them: projector pretraining trains the
    # projector's own weights whole (vision tower and language model frozen); instruction tuning puts LoRA
    # on the language model (or trains it whole) with the projector, the vision tower frozen.
    "vlm_pretrain": ("full",),
    "vlm_sft": ("lora", "full"),
}
# The types that train an image-text-to-text model (a catalog entry with `modality: vision`).
VISION_TYPES = ("vlm_pretrain", "vlm_sft")
# Why a type refuses the methods ALLOWED_METHODS leaves out of it.
_REFUSALS = {
    "pretrain": "pretraining adapts every weight; use method 'full' (or 'freeze': the last layers)",
    **{
        kind: f"TRL's {kind} trainer is run here with full, lora, qlora or freeze; use one of those"
        for kind in TRL_TYPES
    },
    "vlm_pretrain": "projector pretraining trains only the projector, all of its weights, the vision "
    "tower and language model frozen; use method 'full'",
    "vlm_sft": "vision instruction tuning runs with lora (on the language model, the projector trained "
    "too) or full (language model and projector); use one of those",
}
NOT_YET = {
    (kind, method): reason
    for kind, reason in _REFUSALS.items()
    for method in _EVERY
    if method not in ALLOWED_METHODS[kind]
}
GPU_METHODS = {
    "qlora": "QLoRA needs a CUDA device (bitsandbytes quantizes the base model to 4-bit NF4 there)"
}


def cuda_visible() -> bool:
    """Whether the train step will find a CUDA device, judged without importing torch (the Airflow
    worker validates the conf at parse and trigger time): the kubernetes backend runs the train step in
    GPU pods (include/configs/kubernetes.yaml); the local backend runs it here, where an NVIDIA driver
    shows /dev/nvidiactl. TUNERFLOW_CUDA=1 or 0 overrides both, e.g. for a worker whose GPUs the driver
    exposes elsewhere."""
    forced = os.environ.get("TUNERFLOW_CUDA", "").strip()
    if forced in ("0", "1"):
        return forced == "1"
    if os.environ.get("TUNERFLOW_BACKEND", "local").strip().lower() == "kubernetes":
        return True
    return os.path.exists("/dev/nvidiactl")


# Which prepared dataset kinds each training type learns from.
DATASET_KINDS: dict[str, tuple[str, ...]] = {
    "pretrain": ("text", "chat"),
    "sft": ("chat",),
    "dpo": ("preference",),
    # KTO learns from unpaired good/bad answers; a preference pair is split into one of each (TRL's
    # unpairing), so DPO datasets serve too.
    "kto": ("unpaired", "preference"),
    "orpo": ("preference",),
    "simpo": ("preference",),
    "cpo": ("preference",),
    # GRPO generates answers to a chat row's prompt and rewards them against its last assistant turn.
    "grpo": ("chat",),
    # Chat rows with images (formats llava and openai_vision); only the vision types read their images.
    "vlm_pretrain": ("vision",),
    "vlm_sft": ("vision",),
}

# The types that train without a reference model: reference-model settings are refused for them.
REFERENCE_FREE = ("orpo", "simpo", "cpo", "grpo")


def dataset_kind_problem(training_type: str, dataset: str, kind: str) -> str | None:
    """Why `training_type` cannot train on a dataset of this kind, or None."""
    if kind in DATASET_KINDS[training_type]:
        return None
    wanted = " or ".join(DATASET_KINDS[training_type])
    return (
        f"dataset '{dataset}' holds {kind} rows, but training.type '{training_type}' trains on {wanted} "
        "rows; use a dataset of that kind or change training.type"
    )


class TrainingConfig(StrictModel):
    """What is trained (type) and which weights move (method)."""

    type: TrainingType = Field(
        "sft",
        description="pretrain (loss on all text, packed), sft (loss on every assistant turn's tokens), "
        "dpo (preference pairs, TRL DPOTrainer), kto (unpaired good/bad answers, or preference pairs "
        "split in two; TRL KTOTrainer), orpo (preference pairs, odds-ratio loss, no reference model), "
        "simpo or cpo (preference pairs, TRL CPOTrainer with loss simpo or sigmoid; no reference model), "
        "grpo (chat rows: answers are generated and rewarded by a scoring metric, hparams.grpo_reward, "
        "default scoring.primary; TRL GRPOTrainer), vlm_pretrain (vision rows: projector pretraining of a "
        "LLaVA-style model, method full: only the projector trains) or vlm_sft (vision rows: instruction "
        "tuning, method lora on the language model plus the projector, or full; the vision tower frozen). "
        "The vision types need a model whose catalog entry is `modality: vision`.",
    )
    method: TrainingMethod = Field(
        "lora",
        description="full (every weight), lora (PEFT adapters; hparams lora_variant dora/rslora and "
        "lora_init pissa/olora), qlora (LoRA on a 4-bit NF4 base, needs CUDA), adalora (LoRA whose rank "
        "budget shrinks while training), ia3 (learned scaling vectors), prompt_tuning, prefix_tuning or "
        "p_tuning (virtual tokens: trained and scored, never exported), or freeze (full fine-tuning of the "
        "last freeze_trainable_layers layers only). docs/training.md has the table.",
    )

    @model_validator(mode="after")
    def _method_can_run(self) -> TrainingConfig:
        if self.method in GPU_METHODS and not cuda_visible():
            raise ValueError(
                f"type '{self.type}' with method '{self.method}' is refused: {GPU_METHODS[self.method]} "
                "and none is visible here; use method 'lora', or run the train step on GPUs "
                "(TUNERFLOW_BACKEND=kubernetes, or a worker with an NVIDIA driver; TUNERFLOW_CUDA=1 "
                "declares one)"
            )
        return self


def reward_problem(reward: str, group: str) -> str | None:
    """Why GRPO cannot reward with metric `reward` (hparams group `group`), or None. A reward scores each
    generated answer on its own, so it must be a text metric (a scoring module, built in or a plugin);
    the loss metrics have no value per answer."""
    spec = scoring_plugins.metrics().get(reward)
    if spec is None:
        return (
            f"hparams '{group}': grpo_reward '{reward}' is not a metric; "
            f"{scoring_plugins.unknown_message(reward)}"
        )
    if spec.kind != "text":
        texts = ", ".join(scoring_plugins.text_metric_names())
        return (
            f"hparams '{group}': grpo_reward '{reward}' is computed from the model's loss on held-out rows, "
            f"not per generated answer; set grpo_reward to a text metric ({texts})"
        )
    return None
