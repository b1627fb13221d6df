"""Where a hyperparameter group can train: the rules of the settings that need GPUs (FSDP2, Liger
kernels, torch.compile) or several machines (`nodes`), judged when the conf is validated, without torch.

The train step checks the packages and devices again where it runs (tasks.training.parallel); these
rules refuse early what this deployment cannot run at all, naming the field and what to do.
"""

from __future__ import annotations

import os
from typing import Any

from tasks.config.training import cuda_visible
from tasks.storage import store

# What each GPU-only setting is refused for, when no CUDA device will be there.
GPU_SETTINGS = {
    "fsdp": "FSDP2 shards the model over CUDA devices (NCCL)",
    "use_liger_kernel": "Liger kernels are Triton kernels, which run on CUDA devices",
    "torch_compile": "torch.compile is offered for GPU runs, where its kernels pay for the compile time",
}


def kubernetes_backend() -> bool:
    """Whether heavy steps run as pods (TUNERFLOW_BACKEND, as tasks.backends reads it)."""
    return os.environ.get("TUNERFLOW_BACKEND", "local").strip().lower() == "kubernetes"


def parallel_problems(hp: Any, method: str) -> list[str]:
    """Why this resolved hyperparameter group cannot train here with `method`, one line per setting."""
    name = f"hparams '{hp.name}'"
    problems = []
    if not cuda_visible():
        for field, reason in GPU_SETTINGS.items():
            if getattr(hp, field):
                problems.append(
                    f"{name}: {field} is refused: {reason} and none is visible here; unset {field}, or run "
                    "the train step on GPUs (TUNERFLOW_BACKEND=kubernetes, or a worker with an NVIDIA "
                    "driver; TUNERFLOW_CUDA=1 declares one)"
                )
    if hp.fsdp and method == "qlora":
        problems.append(
            f"{name}: fsdp with training.method 'qlora' is refused (each process quantizes its own copy "
            "on its own GPU); use method lora with fsdp, or unset fsdp"
        )
    if hp.nodes > 1 and not kubernetes_backend():
        problems.append(
            f"{name}: nodes {hp.nodes} needs the kubernetes backend (TUNERFLOW_BACKEND=kubernetes), "
            "which submits a Kubeflow Trainer TrainJob; the local backend trains on this worker only: "
            "set nodes 1 (the step uses every GPU here, or TUNERFLOW_NPROC processes)"
        )
    if hp.nodes > 1 and hp.deepspeed and not store.is_local(store.default_root()):
        problems.append(
            f"{name}: deepspeed over {hp.nodes} nodes with an s3:// store is refused: every rank writes its "
            "own ZeRO shards, and node 0 commits only its own files; use fsdp (whole checkpoints from rank "
            "0), or a file:// store on a ReadWriteMany store_volume"
        )
    return problems
