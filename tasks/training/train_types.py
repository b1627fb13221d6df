"""How each training type and method becomes a TRL trainer: the rows it learns from, the model it
loads, the trainer class and its type-specific settings. `tasks.training.trainer` adds checkpoints and logs.

- pretrain: language modelling on all tokens, rows packed into `max_seq_length` rows (TRL packing).
- sft: loss on the tokens of every assistant turn of a conversation, with the end-of-turn token, and
  on nothing else (system, user and tool turns and the template's role headers are masked).
- dpo, kto, orpo, simpo, cpo: `tasks.training.preference_types`; grpo (rewarded by a scoring metric):
  `tasks.training.grpo_reward`.
- vlm_pretrain, vlm_sft (vision-language models): `tasks.training.vision_types`.
- methods: the model and PEFT config each trains come from `tasks.training.peft_methods`.

Heavy imports stay inside functions; pure helpers (precision, accumulation, masks) are testable alone.
"""

from __future__ import annotations

import importlib.util
import logging
from typing import Any

from tasks.config.hparams import ResolvedHParams, trainer_arguments, training_hparam_problems
from tasks.config.peft_fields import method_hparam_problems
from tasks.config.training import VISION_TYPES, TrainingConfig
from tasks.contracts.train import TrainSpec
from tasks.runtime.errors import StepError
from tasks.runtime.launch import world_size
from tasks.training.base_models import apply_tokenizer_overrides, load_tokenizer, weights_location
from tasks.training.chat_spans import CHATML_TEMPLATE as CHATML_TEMPLATE
from tasks.training.chat_spans import assistant_spans as assistant_spans
from tasks.training.chat_spans import ensure_chat_template
from tasks.training.grpo_reward import build_grpo_trainer
from tasks.training.parallel import check_parallel_runtime, parallel_arguments
from tasks.training.parallel import deepspeed_config as deepspeed_config
from tasks.training.peft_methods import is_prompt_learning, load_model, method_callbacks, prepare
from tasks.training.preference_types import build_preference_trainer, pair_rows
from tasks.training.vision_types import build_vision_trainer

PREFERENCE_TYPES = ("dpo", "kto", "orpo", "simpo", "cpo")

log = logging.getLogger("tunerflow.train")


def resolve_precision(precision: str, cuda: bool, bf16_supported: bool) -> str:
    """bf16, fp16 or fp32 for this device; `auto` picks the fastest one that trains stably."""
    if precision == "auto":
        if not cuda:
            return "fp32"
        return "bf16" if bf16_supported else "fp16"
    if precision in ("bf16", "fp16") and not cuda:
        raise StepError(
            f"hparams.precision '{precision}' needs a CUDA device and this train step runs on CPU; "
            "use precision auto or fp32"
        )
    if precision == "bf16" and not bf16_supported:
        raise StepError("hparams.precision 'bf16' is not supported by this GPU; use auto or fp16")
    return precision


def gradient_accumulation(batch_size: int, micro_batch_size: int, devices: int) -> int:
    """Micro-batches per optimizer step so that one step sees `batch_size` rows over all devices."""
    per_pass = micro_batch_size * devices
    if batch_size % per_pass:
        raise StepError(
            f"hparams.batch_size {batch_size} is not a multiple of micro_batch_size {micro_batch_size} x "
            f"{devices} device(s) = {per_pass}; choose a batch_size that divides"
        )
    return batch_size // per_pass


def check_runtime(hp: ResolvedHParams, training: TrainingConfig, cuda: bool) -> None:
    """Settings this machine cannot run, refused before the model is loaded."""
    if training.method == "qlora":
        if not cuda:
            raise StepError(
                "training.method 'qlora' needs a CUDA device (bitsandbytes 4-bit) and this train step sees "
                "none; use method 'lora' or run on a GPU"
            )
        if importlib.util.find_spec("bitsandbytes") is None:
            raise StepError("training.method 'qlora' needs bitsandbytes: pip install bitsandbytes")
    if hp.attn_implementation == "flash_attention_2" and (
        not cuda or importlib.util.find_spec("flash_attn") is None
    ):
        raise StepError(
            "hparams.attn_implementation 'flash_attention_2' needs the flash-attn package and a CUDA device; "
            "use sdpa (the default) or install flash-attn in the trainer image"
        )
    if ("8bit" in hp.optim or hp.optim.startswith("paged")) and (
        not cuda or importlib.util.find_spec("bitsandbytes") is None
    ):
        raise StepError(f"hparams.optim '{hp.optim}' needs bitsandbytes and a CUDA device; use adamw_torch")
    check_parallel_runtime(hp, cuda, training.method)
    problems = training_hparam_problems(hp, training.type) + method_hparam_problems(hp, training.method)
    if problems:
        raise StepError("; ".join(problems))


def uses_packing(hp: ResolvedHParams, training_type: str) -> bool:
    return hp.packing if hp.packing is not None else training_type == "pretrain"


def uses_padding_free(hp: ResolvedHParams, training_type: str) -> bool:
    """Padding-free micro-batches, unless packing already removes the padding. On by default for SFT:
    per-step losses are identical to padded batches and no compute goes to pad tokens
    (bench/train_throughput.py)."""
    if training_type != "sft" or uses_packing(hp, training_type):
        return False
    return hp.padding_free is not False


def sft_features(tokenizer: Any, messages: list[dict[str, Any]], max_length: int | None) -> dict[str, Any]:
    """`input_ids` and `assistant_masks` (1 on assistant answer tokens) of one conversation.

    TRL's own `assistant_only_loss` needs `{% generation %}` markers in the chat template and patches
    in only the templates it knows; ChatML (SmolLM2, the test model) and most others have none. The
    masks are therefore built from the rendered answer spans and the tokenizer's character offsets,
    which works for any template; TRL then turns them into labels (-100 elsewhere), pads or packs.
    """
    if not getattr(tokenizer, "is_fast", False):
        raise StepError("sft needs a fast (Rust) tokenizer for its answer masks; this model ships a slow one")
    text, spans = assistant_spans(tokenizer, messages)
    encoded = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
    masks = [
        int(any(start <= begin < stop for start, stop in spans)) for begin, _ in encoded["offset_mapping"]
    ]
    ids = encoded["input_ids"]
    if max_length is not None:
        ids, masks = ids[:max_length], masks[:max_length]
    return {"input_ids": ids, "assistant_masks": masks}


def sft_dataset(tokenizer: Any, rows: list[dict[str, Any]], max_length: int | None, split: str) -> Any:
    """Tokenized SFT rows; rows whose answers all fall past `max_length` are dropped (no loss left)."""
    from datasets import Dataset

    features = []
    for index, row in enumerate(rows):
        try:
            item = sft_features(tokenizer, row["messages"], max_length)
        except ValueError as error:
            raise StepError(f"{split} row {index} ({row.get('id', '?')}): {error}") from None
        if any(item["assistant_masks"]):
            features.append(item)
    if rows and not features:
        raise StepError(
            f"{split}: no row has an answer token within max_seq_length {max_length}; raise max_seq_length"
        )
    if len(features) < len(rows):
        log.warning("%s: %d rows have no answer within max_seq_length", split, len(rows) - len(features))
    return Dataset.from_list(features)


def to_trl_rows(rows: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    """Prepared rows as TRL's dataset types: language modelling text or conversations, or preference."""
    if kind == "text":
        return [{"text": row["text"]} for row in rows]
    if kind == "preference":
        return pair_rows(rows, kind)
    return [{"messages": row["messages"]} for row in rows]


def schedule(hp: ResolvedHParams) -> dict[str, Any]:
    if hp.lr_scheduler == "cosine" and hp.min_learning_rate:
        return {
            "lr_scheduler_type": "cosine_with_min_lr",
            "lr_scheduler_kwargs": {"min_lr": hp.min_learning_rate},
        }
    return {"lr_scheduler_type": hp.lr_scheduler}


def build_trainer(
    job: TrainSpec,
    train_rows: list[dict[str, Any]],
    validation_rows: list[dict[str, Any]],
    common: dict[str, Any],
    callbacks: list[Any],
) -> tuple[Any, Any]:
    """(trainer, tokenizer) for this job. `common` holds the TrainingArguments shared by every type
    (output dir, steps, logging, checkpoints); the rest is chosen here from the type and method."""
    import torch

    hp, training, entry, kind = job.hparams, job.training, job.model, job.dataset.kind
    cuda = torch.cuda.is_available()
    check_runtime(hp, training, cuda)
    precision = resolve_precision(hp.precision, cuda, cuda and torch.cuda.is_bf16_supported())
    # The processes torchrun started (tasks.runtime.launch), each training on its own device.
    devices = world_size()
    accumulation = gradient_accumulation(hp.batch_size, hp.micro_batch_size, devices)
    log.info(
        "global batch %d = %d process(es) x micro batch %d x accumulation %d",
        hp.batch_size,
        devices,
        hp.micro_batch_size,
        accumulation,
    )

    args: dict[str, Any] = {
        **common,
        # The hyperparameters the trainer takes unchanged, as tasks/config/hparam_fields.py declares them.
        **trainer_arguments(hp, training.type),
        **schedule(hp),
        "per_device_train_batch_size": hp.micro_batch_size,
        "per_device_eval_batch_size": hp.micro_batch_size,
        "gradient_accumulation_steps": accumulation,
        "bf16": precision == "bf16",
        "fp16": precision == "fp16",
        "use_cpu": not cuda,
        # DeepSpeed ZeRO or FSDP2 (tasks.training.parallel)
        **parallel_arguments(hp),
    }
    if training.type in VISION_TYPES:
        # A vision-language model: its processor, its own freezing and collator (tasks.training.vision_types).
        return build_vision_trainer(job, train_rows, validation_rows, args, callbacks, precision)
    tokenizer = load_tokenizer(entry, job.store_root)
    if kind != "text":
        ensure_chat_template(tokenizer, entry)
    model = load_model(entry, job.store_root, hp, training.method, precision)
    apply_tokenizer_overrides(tokenizer, entry, model)
    prepared = prepare(model, hp, training.method, weights_location(entry, job.store_root))
    model, peft_config = prepared.model, prepared.peft_config
    callbacks = [*callbacks, *method_callbacks(training.method)]

    data = (train_rows, validation_rows, kind)
    if training.type in PREFERENCE_TYPES:
        if training.type == "dpo":
            args = {**args, "loss_type": [hp.dpo_loss_type]}
        trainer = build_preference_trainer(
            training.type, model, tokenizer, peft_config, args, hp.max_seq_length, data, callbacks
        )
    elif training.type == "grpo":
        reward = hp.grpo_reward or (job.scoring.primary if job.scoring else None)
        if reward is None:
            raise StepError("grpo: set hparams.grpo_reward (this spec has no scoring.primary to default to)")
        # The judge's own settings (model, rubric, concurrency) when it is the reward.
        options = job.scoring.judge.model_dump() if job.scoring and reward == "llm_judge" else None
        trainer = build_grpo_trainer(model, tokenizer, peft_config, args, data, reward, options, callbacks)
    else:
        trainer = _sft_trainer(hp, training, model, tokenizer, peft_config, args, data, callbacks)
    trainer.tunerflow_prepared = prepared
    return trainer, tokenizer


def _sft_trainer(
    hp: ResolvedHParams,
    training: TrainingConfig,
    model: Any,
    tokenizer: Any,
    peft_config: Any,
    args: dict[str, Any],
    data: tuple[list[dict[str, Any]], list[dict[str, Any]], str],
    callbacks: list[Any],
) -> Any:
    """TRL's SFTTrainer for pretrain (every token, packed) and sft (answer tokens only)."""
    from datasets import Dataset
    from trl import SFTConfig, SFTTrainer

    train_rows, validation_rows, kind = data
    train_data = to_trl_rows(train_rows, kind)
    eval_data = to_trl_rows(validation_rows, kind)
    packing = uses_packing(hp, training.type)
    # Prompt-learning methods prepend virtual tokens to each row: rows stay apart (padded).
    padding_free = uses_padding_free(hp, training.type) and not is_prompt_learning(training.method)
    if training.type == "sft":
        # Pre-tokenized with answer masks (see sft_features); TRL builds the labels from them. Without
        # packing, padding-free rows are not cut by TRL, so they are cut here.
        length = hp.max_seq_length if not packing else None
        train_dataset = sft_dataset(tokenizer, train_data, length, "train")
        eval_dataset = sft_dataset(tokenizer, eval_data, length, "validation") if eval_data else None
    else:
        train_dataset = Dataset.from_list(train_data)
        eval_dataset = Dataset.from_list(eval_data) if eval_data else None
    config = SFTConfig(
        **args,
        max_length=None if padding_free else hp.max_seq_length,
        packing=packing,
        padding_free=padding_free,
        # pretrain: every token; sft: the answer masks above decide.
        completion_only_loss=False,
        eos_token=tokenizer.eos_token,
    )
    return SFTTrainer(
        model=model,
        args=config,
        train_dataset=train_dataset,
        eval_dataset=eval_dataset,
        processing_class=tokenizer,
        peft_config=peft_config,
        callbacks=callbacks,
    )
