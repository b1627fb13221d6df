"""Several processes for one step: the step re-executes itself under torchrun when it is given more than
one device, so the command stays `python -m tasks.train --job <uri>` in a subprocess and in a pod.

How many processes: `TUNERFLOW_NPROC` when set (a deployment's override; also how the CPU tests run two
processes), else one per visible CUDA device (a pod sees exactly the GPUs it requested). The Trainer
then runs data parallel (DDP, DeepSpeed ZeRO when `hparams.deepspeed` names a config, or FSDP2 with
`hparams.fsdp`), and the gradient accumulation is divided by the number of processes over every node so
the global batch stays `batch_size`.

Several nodes: a Kubeflow Trainer TrainJob (tasks.backends.trainjob) runs the same command on every node
with torchrun's settings in the environment (`PET_NNODES`, `PET_NPROC_PER_NODE`, `PET_NODE_RANK`,
`PET_MASTER_ADDR`, `PET_MASTER_PORT`). With more than one node the step relaunches under torchrun
without `--standalone`, and torchrun takes the rendezvous from those variables.
"""

from __future__ import annotations

import logging
import os
import sys

NPROC_ENV = "TUNERFLOW_NPROC"
# What Kubeflow Trainer's torch runtime sets on every node (torchrun's own PET_ settings).
NODES_ENV = "PET_NNODES"
PER_NODE_ENV = "PET_NPROC_PER_NODE"
log = logging.getLogger("tunerflow.launch")


def launched() -> bool:
    """True inside a process that torchrun started (it sets LOCAL_RANK for each worker)."""
    return "LOCAL_RANK" in os.environ


def world_size() -> int:
    return int(os.environ.get("WORLD_SIZE", "1"))


def is_main_process() -> bool:
    """Rank 0 writes the outputs, commits manifests and prints the step's result line."""
    return int(os.environ.get("RANK", "0")) == 0


def processes_wanted() -> int:
    value = os.environ.get(NPROC_ENV)
    if value:
        try:
            count = int(value)
        except ValueError:
            count = 0
        if count < 1:
            raise ValueError(f"{NPROC_ENV}='{value}': give a whole number of processes, 1 or more")
        return count
    import torch

    return max(torch.cuda.device_count(), 1)


def nodes_wanted() -> int:
    """Nodes of this training: `PET_NNODES`, set on every node of a TrainJob; 1 elsewhere."""
    value = os.environ.get(NODES_ENV, "1")
    try:
        return max(int(value), 1)
    except ValueError:
        raise ValueError(f"{NODES_ENV}='{value}': expected a whole number of nodes") from None


def torchrun_argv(module: str, argv: list[str], processes: int, nodes: int = 1) -> list[str]:
    # --standalone: a rendezvous on localhost with a free port, for one node (one pod). Over several
    # nodes torchrun reads the nodes, this node's rank and the master's address from PET_* variables.
    rendezvous = ["--standalone"] if nodes == 1 else []
    return [
        sys.executable,
        "-m",
        "torch.distributed.run",
        *rendezvous,
        f"--nproc-per-node={processes}",
        "-m",
        module,
        *argv,
    ]


def relaunch_if_needed(module: str, argv: list[str]) -> None:
    """Replace this process by torchrun with one worker per device, when there is more than one.

    `exec` keeps the process id, so the local backend's SIGTERM (and a pod's) reaches torchrun, which
    forwards it to every worker: each saves at the next step boundary as a single process does."""
    if launched():
        return
    nodes = nodes_wanted()
    per_node = os.environ.get(PER_NODE_ENV, "")
    processes = int(per_node) if nodes > 1 and per_node.isdigit() else processes_wanted()
    if processes <= 1 and nodes == 1:
        return
    command = torchrun_argv(module, argv, processes, nodes)
    log.info("launching %d processes on each of %d node(s): %s", processes, nodes, " ".join(command))
    sys.stdout.flush()
    sys.stderr.flush()
    os.execv(sys.executable, command)
