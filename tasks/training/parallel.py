"""How the processes of one training share the model, and the GPU-only speed-ups: the trainer arguments
for DeepSpeed ZeRO or FSDP2 (`hparams.deepspeed` / `hparams.fsdp`, never both), and the runtime checks
of those and of Liger kernels and torch.compile (which the trainer takes unchanged, as declared in
tasks/config/hparam_fields.py).

FSDP2 checkpoints are written as full state dicts by rank 0 (`FULL_STATE_DICT`): a checkpoint is then
one set of files the train step commits from rank 0, whatever the number of processes or nodes, and a
retry on another number of processes still resumes from it (tasks.training.checkpoints).
"""

from __future__ import annotations

import importlib.util
import os
from typing import Any

from tasks.config.catalog import config_dir
from tasks.config.hparams import ResolvedHParams
from tasks.runtime.errors import StepError

# Liger's package name for the import check: the trainer imports it as `liger_kernel`.
LIGER_MODULE = "liger_kernel"


def deepspeed_config(name: str | None) -> str | None:
    """The path of include/configs/deepspeed/<name>.json, or None."""
    if name is None:
        return None
    path = config_dir() / "deepspeed" / f"{name}.json"
    if not path.exists():
        raise StepError(f"hparams.deepspeed '{name}': {path} not found")
    return str(path)


def fsdp_config(hp: ResolvedHParams) -> dict[str, Any]:
    """The Trainer's `fsdp_config` for FSDP2. Activation checkpointing is FSDP's own when
    gradient_checkpointing is on (the Trainer's would add an all-gather in every backward)."""
    return {
        "fsdp_version": 2,
        "reshard_after_forward": hp.fsdp == "full_shard",
        "auto_wrap_policy": "TRANSFORMER_BASED_WRAP",
        "state_dict_type": "FULL_STATE_DICT",
        "activation_checkpointing": hp.gradient_checkpointing,
        "cpu_ram_efficient_loading": False,
    }


def fsdp_environment(config: dict[str, Any]) -> dict[str, str]:
    """accelerate's FSDP plugin settings as `accelerate launch` would export them. transformers 4.57
    hands the plugin the sharding options through the environment but not the FSDP version, the
    state dict type or the wrap policy, so these are set here too."""
    return {
        "FSDP_VERSION": str(config["fsdp_version"]),
        "FSDP_RESHARD_AFTER_FORWARD": str(config["reshard_after_forward"]).lower(),
        "FSDP_AUTO_WRAP_POLICY": config["auto_wrap_policy"],
        "FSDP_STATE_DICT_TYPE": config["state_dict_type"],
        "FSDP_ACTIVATION_CHECKPOINTING": str(config["activation_checkpointing"]).lower(),
    }


def parallel_arguments(hp: ResolvedHParams) -> dict[str, Any]:
    """Trainer arguments for DeepSpeed ZeRO or FSDP2; they go after the hyperparameters the trainer takes
    unchanged, since FSDP2 moves gradient checkpointing into its own config. Sets the FSDP environment
    (fsdp_environment) in this process, which is the train step's."""
    if hp.fsdp is None:
        return {"deepspeed": deepspeed_config(hp.deepspeed)}
    config = fsdp_config(hp)
    os.environ.update(fsdp_environment(config))
    return {"fsdp": hp.fsdp, "fsdp_config": config, "gradient_checkpointing": False, "deepspeed": None}


def check_parallel_runtime(hp: ResolvedHParams, cuda: bool, method: str) -> None:
    """What this process cannot run, refused before the model is loaded (the conf's validation already
    refused these where no GPU was expected: tasks.config.parallel; a spec written by hand meets them
    here)."""
    if hp.fsdp and method == "qlora":
        raise StepError(
            "hparams.fsdp with training.method 'qlora' is refused: each process quantizes its own copy on "
            "its own GPU; use method lora with fsdp, or unset fsdp"
        )
    if hp.deepspeed and (not cuda or importlib.util.find_spec("deepspeed") is None):
        raise StepError(
            f"hparams.deepspeed '{hp.deepspeed}' needs the deepspeed package and CUDA devices; "
            "leave deepspeed unset or install deepspeed in the trainer image"
        )
    if hp.fsdp and not cuda:
        raise StepError(f"hparams.fsdp '{hp.fsdp}' needs CUDA devices; this train step sees none")
    if hp.use_liger_kernel and (not cuda or importlib.util.find_spec(LIGER_MODULE) is None):
        raise StepError(
            "hparams.use_liger_kernel needs the liger-kernel package and a CUDA device; unset it or install "
            "liger-kernel in the trainer image"
        )
    if hp.torch_compile and not cuda:
        raise StepError("hparams.torch_compile is for GPU runs; this train step sees no CUDA device")
