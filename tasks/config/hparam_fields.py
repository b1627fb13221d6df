"""Every hyperparameter, declared once.

A declaration says everything the rest of the code needs to know about a field: its type, the limits a
conf's inline value must respect, its default, its description, which training types use it and under
which names the trainer's arguments (`transformers.TrainingArguments`, TRL's `SFTConfig` / `DPOConfig`)
take it unchanged. `tasks.config.hparams` builds from this list the conf's `HParams`, the train step's
`ResolvedHParams`, the defaults, the trainer arguments and the README's table; the trigger form's
schema follows from `HParams`. Adding a field here is the whole change, unless the trainer needs the
value transformed (then `tasks.training.train_types` reads it by name). The settings of the KTO, ORPO,
SimPO, CPO and GRPO training types (`tasks.config.type_fields`) and of the PEFT methods
(`tasks.config.peft_fields`) are declared the same way and listed here after the others.
"""

from __future__ import annotations

from typing import Literal

from tasks.config.hparam_spec import TRAINING_TYPES, HParam
from tasks.config.peft_fields import PEFT_FIELDS
from tasks.config.type_fields import TYPE_FIELDS

__all__ = ["HPARAM_FIELDS", "TRAINING_TYPES", "HParam"]

Scheduler = Literal["linear", "cosine", "constant"]
Precision = Literal["auto", "bf16", "fp16", "fp32"]
Attention = Literal["sdpa", "eager", "flash_attention_2"]
Optimizer = Literal[
    "adamw_torch",
    "adamw_torch_fused",
    "adafactor",
    "sgd",
    "adamw_8bit",
    "paged_adamw_8bit",
    "paged_adamw_32bit",
]
DpoLoss = Literal[
    "sigmoid", "ipo", "hinge", "robust", "bco_pair", "sppo_hard", "nca_pair", "apo_zero", "apo_down"
]
DeepSpeedStage = Literal["zero2", "zero3"]
FsdpSharding = Literal["full_shard", "shard_grad_op"]


_GENERAL: tuple[HParam, ...] = (
    HParam(
        "learning_rate",
        float,
        2e-4,
        "Peak learning rate.",
        limits={"gt": 0},
        trainer_args=("learning_rate",),
        required_in_spec=True,
    ),
    HParam(
        "min_learning_rate",
        float,
        0.0,
        "Floor of the cosine schedule (0: decay to zero); only with lr_scheduler cosine.",
        limits={"ge": 0},
    ),
    HParam(
        "lr_scheduler",
        Scheduler,
        "cosine",
        "LR schedule after warmup: linear decay, cosine decay, or constant.",
        required_in_spec=True,
    ),
    HParam(
        "warmup_ratio",
        float,
        0.03,
        "Fraction of the optimizer steps spent warming up linearly from 0.",
        limits={"ge": 0, "lt": 1},
        trainer_args=("warmup_ratio",),
        required_in_spec=True,
    ),
    HParam(
        "epochs",
        float,
        3,
        "Passes over the training split.",
        limits={"gt": 0},
        trainer_args=("num_train_epochs",),
        required_in_spec=True,
    ),
    HParam(
        "max_steps",
        int,
        -1,
        "Stop after this many optimizer steps (-1: use epochs).",
        trainer_args=("max_steps",),
        required_in_spec=True,
    ),
    HParam(
        "batch_size",
        int,
        16,
        "Global batch size: rows per optimizer step over all GPUs. Gradient accumulation = "
        "batch_size / (micro_batch_size x GPUs); the train step refuses a batch size that does not divide.",
        limits={"ge": 1},
        required_in_spec=True,
    ),
    HParam(
        "micro_batch_size",
        int,
        4,
        "Rows per forward pass on one device.",
        limits={"ge": 1},
        required_in_spec=True,
    ),
    HParam(
        "max_seq_length",
        int,
        1024,
        "Longest tokenized row (longer rows are cut); with packing, the packed row length.",
        limits={"ge": 8},
        required_in_spec=True,
    ),
    HParam(
        "precision",
        Precision,
        "auto",
        "Training dtype: auto (bf16 on a CUDA device that supports it, fp16 on other CUDA devices, "
        "fp32 on CPU), bf16, fp16 or fp32. bf16 and fp16 need a CUDA device.",
    ),
    HParam(
        "gradient_checkpointing",
        bool,
        False,
        "Recompute activations in the backward pass: less memory, about 30% slower.",
        trainer_args=("gradient_checkpointing",),
    ),
    HParam(
        "attn_implementation",
        Attention,
        "sdpa",
        "Attention kernel: sdpa (PyTorch), eager, or flash_attention_2 (needs the "
        "flash-attn package and a CUDA device).",
    ),
    HParam(
        "packing",
        bool | None,
        None,
        "Pack several rows into each max_seq_length row (TRL best-fit packing, no padding). "
        "Default: on for pretrain, off for sft; the preference types and GRPO do not pack.",
    ),
    HParam(
        "padding_free",
        bool | None,
        None,
        "SFT: concatenate a micro-batch into one row with per-row position ids instead of padding "
        "(packing implies it). Default: on for sft (same losses, fewer tokens computed); pretrain "
        "only with packing; the preference types and GRPO pad and refuse it.",
    ),
    HParam(
        "weight_decay",
        float,
        0.0,
        "Decoupled weight decay (AdamW).",
        limits={"ge": 0},
        trainer_args=("weight_decay",),
        required_in_spec=True,
    ),
    HParam(
        "optim",
        Optimizer,
        "adamw_torch",
        "Optimizer (a transformers `optim` name); the 8-bit and paged ones need bitsandbytes and CUDA.",
        trainer_args=("optim",),
    ),
    HParam(
        "max_grad_norm",
        float,
        1.0,
        "Clip the gradient norm to this value (0: no clipping).",
        limits={"ge": 0},
        trainer_args=("max_grad_norm",),
    ),
    HParam("lora_r", int, 16, "LoRA rank.", limits={"ge": 1}, required_in_spec=True),
    HParam(
        "lora_alpha", int, 32, "LoRA scaling numerator (alpha / r).", limits={"ge": 1}, required_in_spec=True
    ),
    HParam(
        "lora_dropout",
        float,
        0.05,
        "Dropout on the LoRA branch.",
        limits={"ge": 0, "lt": 1},
        required_in_spec=True,
    ),
    HParam(
        "lora_target_modules",
        list[str] | str,
        "all-linear",
        "Modules to adapt: a list of names, or `all-linear`.",
        required_in_spec=True,
    ),
    HParam(
        "dpo_beta",
        float,
        0.1,
        "DPO: how far the policy may move from the reference (higher: less).",
        limits={"gt": 0},
        training_types=("dpo",),
        trainer_args=("beta",),
    ),
    HParam(
        "dpo_loss_type",
        DpoLoss,
        "sigmoid",
        "DPO: TRL loss type (sigmoid is the original DPO loss; ipo, hinge, robust, ...).",
        training_types=("dpo",),
    ),
    HParam(
        "neftune_noise_alpha",
        float | None,
        None,
        "SFT: NEFTune, uniform noise on the input embeddings while training, scaled by alpha / "
        "sqrt(sequence length x hidden size); the paper uses 5. Unset: no noise.",
        limits={"gt": 0},
        training_types=("sft",),
        trainer_args=("neftune_noise_alpha",),
    ),
    HParam(
        "deepspeed",
        DeepSpeedStage | None,
        None,
        "DeepSpeed ZeRO stage: zero2 or zero3 (include/configs/deepspeed/<name>.json); none by "
        "default. Needs the deepspeed package and CUDA devices.",
    ),
    HParam(
        "fsdp",
        FsdpSharding | None,
        None,
        "FSDP2 (PyTorch fully sharded data parallel, version 2) instead of DDP: full_shard shards "
        "weights, gradients and optimizer state over every process; shard_grad_op keeps the weights "
        "gathered from forward to backward (faster, more memory). Unset: none. Needs CUDA devices; not "
        "with deepspeed or qlora.",
    ),
    HParam(
        "use_liger_kernel",
        bool,
        False,
        "Liger Triton kernels (RMSNorm, RoPE, SwiGLU, fused linear cross-entropy) patched into the "
        "model: less memory, more tokens per second. GPU runs only; needs the liger-kernel package.",
        trainer_args=("use_liger_kernel",),
    ),
    HParam(
        "torch_compile",
        bool,
        False,
        "Compile the model with torch.compile (inductor): faster steps once the first ones have "
        "compiled. GPU runs only.",
        trainer_args=("torch_compile",),
    ),
    HParam(
        "nodes",
        int,
        1,
        "Machines one training spans. Above 1 the kubernetes backend submits a Kubeflow Trainer "
        "TrainJob (torch-distributed runtime) with this many nodes; the local backend refuses it.",
        limits={"ge": 1},
    ),
    HParam(
        "processes_per_node",
        int | None,
        None,
        "With nodes above 1: processes on each node, one GPU each (the TrainJob's numProcPerNode and "
        "GPUs per node). Unset: the train step's gpus in kubernetes.yaml.",
        limits={"ge": 1},
    ),
    HParam(
        "seed",
        int,
        42,
        "Training seed (model init of new weights, data order, dropout).",
        limits={"ge": 0},
        trainer_args=("seed", "data_seed"),
        required_in_spec=True,
    ),
    HParam(
        "logging_steps",
        int,
        10,
        "Log metrics every N optimizer steps.",
        limits={"ge": 1},
        required_in_spec=True,
    ),
    # 100 steps bound the work a crash loses at minutes on a GPU, and a LoRA checkpoint (adapter plus
    # its optimizer state) is small enough to write that often.
    HParam(
        "save_steps",
        int,
        100,
        "Commit a resumable checkpoint every N optimizer steps; a retried job resumes from the "
        "newest one, so a crash loses at most N steps. Default 100.",
        limits={"ge": 1},
    ),
    HParam(
        "save_total_limit",
        int,
        2,
        "Keep the newest N committed checkpoints; older ones are deleted. Default 2.",
        limits={"ge": 1},
    ),
    HParam(
        "eval_steps",
        int | None,
        None,
        "Measure the validation loss every N optimizer steps (unset: every save_steps).",
        limits={"ge": 1},
    ),
    HParam(
        "early_stopping_patience",
        int | None,
        None,
        "Early stopping: stop once the validation loss has not improved for this many evaluations in a "
        "row, and keep the best checkpoint's weights. Needs a validation split. Unset: off.",
        limits={"ge": 1},
    ),
    HParam(
        "early_stopping_threshold",
        float,
        0.0,
        "Early stopping: an evaluation improves only when it lowers the best validation loss by more "
        "than this.",
        limits={"ge": 0},
    ),
    HParam(
        "max_train_minutes",
        float | None,
        None,
        "Time limit: stop at the first step end after this many training minutes (every try "
        "counted), with a checkpoint committed; the job is still saved and scored. Unset: none.",
        limits={"gt": 0},
    ),
    HParam(
        "merge_adapter",
        bool,
        False,
        "Mergeable adapters (lora, qlora, adalora, ia3): also write the base model with the adapter merged "
        "in (`merged/`, safetensors) beside the adapter. Default false.",
    ),
)
HPARAM_FIELDS: tuple[HParam, ...] = (*_GENERAL, *TYPE_FIELDS, *PEFT_FIELDS)
