"""tasks.runtime.launch: how many processes a step runs, and the torchrun command that starts them."""

from __future__ import annotations

import sys

import pytest

from tasks.runtime import launch


def test_one_process_without_an_override_or_several_gpus(monkeypatch):
    monkeypatch.delenv(launch.NPROC_ENV, raising=False)
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    assert launch.processes_wanted() == 1


def test_the_override_sets_the_process_count(monkeypatch):
    monkeypatch.setenv(launch.NPROC_ENV, "4")
    assert launch.processes_wanted() == 4


@pytest.mark.parametrize("value", ["0", "two", "-1"])
def test_a_bad_override_names_the_variable(monkeypatch, value):
    monkeypatch.setenv(launch.NPROC_ENV, value)
    with pytest.raises(ValueError, match=f"TUNERFLOW_NPROC='{value}': give a whole number"):
        launch.processes_wanted()


def test_torchrun_runs_the_same_module_and_arguments():
    argv = launch.torchrun_argv("tasks.train", ["--job", "s3://b/jobs/j/train.json"], 8)
    assert argv == [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc-per-node=8",
        "-m",
        "tasks.train",
        "--job",
        "s3://b/jobs/j/train.json",
    ]


def test_inside_torchrun_nothing_is_relaunched_and_only_rank_0_is_main(monkeypatch):
    monkeypatch.setenv(launch.NPROC_ENV, "2")
    monkeypatch.setenv("LOCAL_RANK", "1")
    monkeypatch.setenv("RANK", "1")
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setattr(launch.os, "execv", lambda *a: pytest.fail("relaunched inside torchrun"))
    launch.relaunch_if_needed("tasks.train", ["--job", "x"])
    assert launch.world_size() == 2 and not launch.is_main_process()


def test_a_single_process_is_not_relaunched(monkeypatch):
    monkeypatch.setenv(launch.NPROC_ENV, "1")
    monkeypatch.delenv("LOCAL_RANK", raising=False)
    monkeypatch.setattr(launch.os, "execv", lambda *a: pytest.fail("relaunched a single process"))
    launch.relaunch_if_needed("tasks.train", ["--job", "x"])
    assert launch.is_main_process()


def relaunched(monkeypatch) -> list[list[str]]:
    calls: list[list[str]] = []
    monkeypatch.delenv("LOCAL_RANK", raising=False)
    monkeypatch.setattr(launch.os, "execv", lambda path, argv: calls.append(argv))
    launch.relaunch_if_needed("tasks.train", ["--job", "s3://b/jobs/j/train.json"])
    return calls


def test_on_a_trainjob_node_torchrun_takes_the_rendezvous_from_the_runtime(monkeypatch):
    """Kubeflow Trainer's torch runtime sets PET_*: no --standalone, its processes per node."""
    monkeypatch.setenv(launch.NPROC_ENV, "8")
    monkeypatch.setenv(launch.NODES_ENV, "2")
    monkeypatch.setenv(launch.PER_NODE_ENV, "4")
    (argv,) = relaunched(monkeypatch)
    assert argv[:5] == [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node=4", "-m"]
    assert "--standalone" not in argv and argv[-2:] == ["--job", "s3://b/jobs/j/train.json"]


def test_one_process_on_each_of_several_nodes_still_runs_under_torchrun(monkeypatch):
    monkeypatch.setenv(launch.NODES_ENV, "3")
    monkeypatch.setenv(launch.PER_NODE_ENV, "1")
    (argv,) = relaunched(monkeypatch)
    assert "--nproc-per-node=1" in argv and "--standalone" not in argv


def test_one_node_keeps_the_standalone_rendezvous(monkeypatch):
    monkeypatch.delenv(launch.NODES_ENV, raising=False)
    monkeypatch.setenv(launch.NPROC_ENV, "2")
    (argv,) = relaunched(monkeypatch)
    assert "--standalone" in argv and "--nproc-per-node=2" in argv
