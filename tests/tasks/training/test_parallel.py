"""DeepSpeed or FSDP2 as the trainer's arguments, and the GPU-only speed-ups (Liger kernels,
torch.compile): refused where they cannot run, and trained with on GPUs (tests marked `gpu`)."""

from __future__ import annotations

import os
import re

import pytest

from tasks.config.hparams import ResolvedHParams
from tasks.config.training import TrainingConfig
from tasks.runtime.errors import StepError
from tasks.training.parallel import fsdp_config, fsdp_environment, parallel_arguments
from tasks.training.train_types import check_runtime
from tests.fixtures.gpu import cuda_devices, gpu_test, needs_gpu
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
