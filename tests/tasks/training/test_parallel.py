"""DeepSpeed or FSDP2 as the trainer's arguments, and the GPU-only speed-ups (Liger kernels,
torch.compile): refused where they cannot run, and trained with on GPUs (tests marked `gpu`)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys

import pytest

from tasks.config.hparams import ResolvedHParams
from tasks.config.training import TrainingConfig
from tasks.runtime.errors import StepError
from tasks.storage import store
from tasks.training.parallel import check_parallel_runtime, fsdp_config, fsdp_environment, parallel_arguments
from tasks.training.train_types import check_runtime
from tests.conftest import REPO
from tests.fixtures.gpu import cuda_devices, gpu_test, needs_gpu
from tests.fixtures.network import free_port
from tests.tasks.training.test_train_types import (
    HPARAMS,
    assert_loss_goes_down,
    datasets,  # noqa: F401 (a fixture)
    make_job,
    trainer_for,
)
from tests.tasks.training.test_trainer import (
    dataset_dir,  # noqa: F401 (a fixture)
    run_train_command,
)
from tests.tasks.training.test_trainer import make_job as make_train_job


def hparams(**values) -> ResolvedHParams:
    return ResolvedHParams.model_validate({**HPARAMS, **values})


def test_fsdp2_arguments_shard_fully_and_move_gradient_checkpointing_into_fsdp(monkeypatch):
    for key in fsdp_environment(fsdp_config(hparams(fsdp="full_shard"))):
        monkeypatch.delenv(key, raising=False)
    arguments = parallel_arguments(hparams(fsdp="full_shard", gradient_checkpointing=True))
    assert arguments["fsdp"] == "full_shard" and arguments["deepspeed"] is None
    assert arguments["gradient_checkpointing"] is False
    config = arguments["fsdp_config"]
    assert config["fsdp_version"] == 2 and config["reshard_after_forward"] is True
    assert config["activation_checkpointing"] is True
    # rank 0 writes whole checkpoints, which the train step commits (and any world size resumes)
    assert config["state_dict_type"] == "FULL_STATE_DICT"
    assert os.environ["FSDP_VERSION"] == "2" and os.environ["FSDP_STATE_DICT_TYPE"] == "FULL_STATE_DICT"
    assert parallel_arguments(hparams(fsdp="shard_grad_op"))["fsdp_config"]["reshard_after_forward"] is False


def test_without_fsdp_only_deepspeed_is_passed():
    assert parallel_arguments(hparams()) == {"deepspeed": None}
    assert parallel_arguments(hparams(deepspeed="zero2"))["deepspeed"].endswith("deepspeed/zero2.json")


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"fsdp": "full_shard"}, "hparams.fsdp 'full_shard' needs CUDA devices"),
        ({"use_liger_kernel": True}, "hparams.use_liger_kernel needs the liger-kernel package and a CUDA"),
        ({"torch_compile": True}, "hparams.torch_compile is for GPU runs"),
    ],
)
def test_gpu_only_settings_are_refused_by_a_cpu_train_step(values, message):
    with pytest.raises(StepError, match=re.escape(message)):
        check_runtime(hparams(**values), TrainingConfig(type="sft", method="lora"), cuda=False)


def test_a_hand_written_spec_with_fsdp_and_qlora_is_refused_by_the_train_step():
    with pytest.raises(StepError, match=re.escape("hparams.fsdp with training.method 'qlora' is refused")):
        check_parallel_runtime(hparams(fsdp="full_shard"), cuda=True, method="qlora")


@pytest.mark.parametrize(
    "values",
    [
        pytest.param({"use_liger_kernel": True}, marks=needs_gpu("liger_kernel")),
        pytest.param({"torch_compile": True}, marks=needs_gpu()),
    ],
)
def test_liger_and_compile_train_on_a_gpu(tiny_model_dir, datasets, tmp_path, values):  # noqa: F811
    job = make_job(tmp_path, tiny_model_dir, datasets["chat"], "chat", "sft", "lora", **values)
    trainer, _ = trainer_for(job, tmp_path)
    for key, value in values.items():
        assert getattr(trainer.args, key) is value
    trainer.train()
    assert_loss_goes_down([entry["loss"] for entry in trainer.state.log_history if "loss" in entry])


@gpu_test(devices=2)
@pytest.mark.parametrize("method", ["full", "lora"])
def test_two_gpus_train_under_torchrun_with_fsdp2(tiny_model_dir, dataset_dir, tmp_path, method):  # noqa: F811
    job = make_train_job(tmp_path, tiny_model_dir, dataset_dir, method=method, fsdp="full_shard")
    env = {key: value for key, value in os.environ.items() if key != "TUNERFLOW_NPROC"}
    done, result = run_train_command(job, tmp_path, env)
    assert f"launching {cuda_devices()} processes" in done.stderr
    assert result["steps"] > 0 and result["checkpoints"]["steps"]


def run_as_trainjob_nodes(job, tmp_path, nodes: int = 2, gpus: bool = False) -> list[tuple[str, str]]:
    """`python -m tasks.train --job <spec>` on `nodes` "nodes" of one process each, with the PET_*
    variables Kubeflow Trainer's torch runtime sets (here all on 127.0.0.1); (stdout, stderr) per node."""
    spec = tmp_path / "train.json"
    spec.write_text(job.model_dump_json())
    port = str(free_port())
    base = {key: value for key, value in os.environ.items() if key != "TUNERFLOW_NPROC"}
    started = [
        subprocess.Popen(
            [sys.executable, "-m", "tasks.train", "--job", str(spec)],
            cwd=REPO,
            env={
                **base,
                "PET_NNODES": str(nodes),
                "PET_NPROC_PER_NODE": "1",
                "PET_NODE_RANK": str(rank),
                "PET_MASTER_ADDR": "127.0.0.1",
                "PET_MASTER_PORT": port,
                # on GPUs each "node" sees its own device, as a pod sees only the GPUs it requested
                **({"CUDA_VISIBLE_DEVICES": str(rank)} if gpus else {}),
            },
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for rank in range(nodes)
    ]
    outputs = [process.communicate(timeout=900) for process in started]
    for process, (_, err) in zip(started, outputs, strict=True):
        assert process.returncode == 0, err[-3000:]
    return outputs


def result_lines(stdout: str) -> list[dict]:
    return [json.loads(line) for line in stdout.splitlines() if line.startswith("{")]


@pytest.mark.parametrize(
    "gpus", [pytest.param(False, marks=pytest.mark.slow), pytest.param(True, marks=needs_gpu(devices=2))]
)
def test_two_nodes_train_under_torchrun_and_node_0_alone_commits_and_reports(
    tiny_model_dir,
    dataset_dir,  # noqa: F811
    tmp_path,
    gpus,
):
    """What every node of a TrainJob runs, on CPU (gloo) or one GPU per node (NCCL): the step
    relaunches under torchrun with the runtime's rendezvous, the global batch counts both nodes'
    processes, global rank 0 alone reports, and each checkpoint it commits holds both ranks' RNG states.
    (Resuming is not run on CPU: with several CPU processes transformers maps the optimizer state to
    `cpu:<rank>`, which torch cannot load.)"""
    job = make_train_job(tmp_path, tiny_model_dir, dataset_dir, merge_adapter=False, max_steps=4)
    nodes = run_as_trainjob_nodes(job, tmp_path, gpus=gpus)
    assert all("launching 1 processes on each of 2 node(s)" in err for _, err in nodes)
    assert all("--standalone" not in err for _, err in nodes)
    assert "global batch 4 = 2 process(es) x micro batch 2 x accumulation 1" in nodes[0][1]
    (result,) = result_lines(nodes[0][0])
    assert result_lines(nodes[1][0]) == []  # node 1 prints no result line
    assert result["steps"] == 4 and result["checkpoints"]["steps"] == [2, 4]
    for step in (2, 4):
        checkpoint = store.join(result["checkpoints"]["uri"], f"checkpoint-{step}")
        listed = store.read_json(store.join(checkpoint, store.MANIFEST))["files"]
        assert {"rng_state_0.pth", "rng_state_1.pth"} <= set(listed), step
