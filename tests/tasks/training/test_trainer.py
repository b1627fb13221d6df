"""The train step on a tiny random model: committed checkpoints, resume after a kill or SIGTERM, metrics.

Resume is compared with one uninterrupted run of the same job (`finished`). On CPU a resumed run
redoes exactly the same float32 operations in the same order (the Trainer restores the optimizer,
scheduler and RNG state and skips the batches already seen), so the weights come out identical;
the tolerances below only allow for what differs by construction:
- per-step losses are logged rounded to 4 decimals (1e-4 covers a rounding flip);
- the resumed average training loss re-adds the losses logged before the resume, each rounded to
  5e-5 at most, so it may differ by 5e-5 x (steps before the resume) / (all steps);
- weights and eval loss get float32 round-off room (rtol 1e-5), which a GPU's nondeterministic
  kernels would need.
"""

from __future__ import annotations

import json
import logging
import math
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import pytest

from tasks.config.hparams import HParams, ResolvedHParams
from tasks.contracts.train import TrainSpec
from tasks.runtime.step import execute
from tasks.storage import store
from tasks.training import checkpoints
from tasks.training.trainer import Preempted, Preemption, train
from tests.fixtures.gpu import cuda_devices, gpu_test

REPO = Path(__file__).resolve().parents[3]
MAX_STEPS, SAVE_STEPS, KEEP = 8, 2, 2
HPARAMS = {
    "name": "t",
    "learning_rate": 1e-3,
    "lr_scheduler": "linear",
    "warmup_ratio": 0.0,
    "epochs": 1,
    "max_steps": MAX_STEPS,
    "batch_size": 4,
    "micro_batch_size": 2,  # two micro-batches per step: resume must skip batches, not steps
    "max_seq_length": 64,
    "weight_decay": 0.0,
    "lora_r": 4,
    "lora_alpha": 8,
    "lora_dropout": 0.1,  # random masks: resume must restore the RNG state too
    "lora_target_modules": "all-linear",
    "seed": 7,
    "logging_steps": 1,
    "save_steps": SAVE_STEPS,
    "save_total_limit": KEEP,
    "merge_adapter": True,
}


@pytest.fixture(scope="module")
def dataset_dir(tmp_path_factory) -> Path:
    """A prepared chat dataset (train and validation splits) from the shipped demo rows."""
    rows = [json.loads(line) for line in (REPO / "include/data/tuna_identity.jsonl").read_text().splitlines()]
    directory = tmp_path_factory.mktemp("dataset")
    for split, chunk in (("train", rows[:64]), ("validation", rows[64:72])):
        with open(directory / f"{split}.jsonl", "w") as handle:
            for index, row in enumerate(chunk):
                messages = [
                    {"role": "user", "content": row["instruction"]},
                    {"role": "assistant", "content": row["output"]},
                ]
                handle.write(json.dumps({"id": f"{split}:{index}", "messages": messages}) + "\n")
    return directory


def make_job(base: Path, model_dir: Path, data_dir: Path, method: str = "lora", **hparams) -> TrainSpec:
    return TrainSpec.model_validate(
        {
            "store_root": base.as_uri(),
            "job_id": "j",
            "label": "tuna|tiny|t",
            "step": "train",
            "output": (base / "jobs" / "j" / "train").as_uri(),
            "dataset": {"name": "tuna", "kind": "chat", "uri": data_dir.as_uri()},
            "model": {"name": "tiny", "source": {"path": str(model_dir)}, "kind": "uri"},
            "hparams": {**HPARAMS, **hparams},
            "training": {"type": "sft", "method": method},
        }
    )


def stored(job: TrainSpec) -> dict:
    """The spec as written to the store, which `tasks.training.checkpoints` keys on."""
    return job.model_dump(mode="json")


def fingerprint(job: TrainSpec) -> str:
    return checkpoints.fingerprint(stored(job))


def paths(job: TrainSpec) -> SimpleNamespace:
    root = checkpoints.checkpoints_uri(stored(job))
    return SimpleNamespace(out=store.local_path(job.output), checkpoints=store.local_path(root))


def metric_records(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]


def loss_curve(out: Path) -> list[tuple[int, float]]:
    return [(r["step"], r["loss"]) for r in metric_records(out) if "loss" in r]


def tensorboard_losses(out: Path) -> list[tuple[int, float]]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    # purge_orphaned_data=False: a step logged twice must show up here, not be silently dropped.
    events = EventAccumulator(str(out / "tensorboard"), purge_orphaned_data=False)
    events.Reload()
    return [(event.step, event.value) for event in events.Scalars("train/loss")]


@pytest.fixture(scope="module")
def finished(tiny_model_dir, dataset_dir, tmp_path_factory) -> SimpleNamespace:
    """One uninterrupted run, with the progress lines it logged."""
    job = make_job(tmp_path_factory.mktemp("finished"), tiny_model_dir, dataset_dir)
    lines: list[str] = []
    handler = logging.Handler()
    handler.emit = lambda record: lines.append(record.getMessage())
    logger = logging.getLogger("tunerflow.train")
    level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        result = execute("train", train, job)
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)
    return SimpleNamespace(job=job, result=result, lines=lines, **vars(paths(job)))


def assert_same_training(resumed: SimpleNamespace, reference: SimpleNamespace, resumed_from: int) -> None:
    import torch
    from safetensors.torch import load_file

    a = load_file(resumed.out / "adapter" / "adapter_model.safetensors")
    b = load_file(reference.out / "adapter" / "adapter_model.safetensors")
    assert a.keys() == b.keys()
    for name in a:
        torch.testing.assert_close(a[name], b[name], rtol=1e-5, atol=1e-6)
    ours, theirs = loss_curve(resumed.out), loss_curve(reference.out)
    assert [s for s, _ in ours] == [s for s, _ in theirs] == list(range(1, MAX_STEPS + 1))
    assert all(abs(x - y) <= 1e-4 for (_, x), (_, y) in zip(ours, theirs, strict=True))
    rounding = 5e-5 * resumed_from / MAX_STEPS
    assert abs(resumed.result["train_loss"] - reference.result["train_loss"]) <= rounding + 1e-6
    assert math.isclose(resumed.result["eval_loss"], reference.result["eval_loss"], rel_tol=1e-5)


def assert_logs_continue_without_repeats(out: Path) -> None:
    records = metric_records(out)
    for key in ("loss", "eval_loss"):
        steps = [r["step"] for r in records if key in r]
        assert steps == sorted(set(steps)), (key, steps)
    assert [s for s, _ in tensorboard_losses(out)] == list(range(1, MAX_STEPS + 1))


# -- one uninterrupted run --------------------------------------------------------------------------


def test_checkpoints_are_committed_with_manifests_and_pruned_to_save_total_limit(finished):
    committed = checkpoints.committed(finished.checkpoints)
    assert [step for step, _ in committed] == [MAX_STEPS - SAVE_STEPS, MAX_STEPS]
    # Earlier checkpoints were deleted once newer ones were committed.
    assert sorted(p.name for p in finished.checkpoints.glob("checkpoint-*")) == [
        "checkpoint-6",
        "checkpoint-8",
    ]
    for step, directory in committed:
        assert checkpoints.problem(directory, fingerprint(finished.job)) is None
        manifest = store.read_json(store.to_uri(directory / "manifest.json"))
        assert manifest["result"]["step"] == step
        assert {"adapter_model.safetensors", "optimizer.pt", "scheduler.pt", "trainer_state.json"} <= set(
            manifest["files"]
        )
    assert finished.result["checkpoints"]["steps"] == [6, 8]
    assert finished.result["resumed_from_step"] is None and finished.result["steps"] == MAX_STEPS
    # The train output itself is committed as usual, and its manifest covers the new outputs.
    assert store.verify(finished.job.output) == []


def test_metrics_jsonl_records_loss_lr_grad_norm_tokens_per_s_and_eval_loss(finished):
    records = metric_records(finished.out)
    train_records = [r for r in records if "loss" in r]
    assert [r["step"] for r in train_records] == list(range(1, MAX_STEPS + 1))
    for record in train_records:
        assert record["loss"] > 0 and record["grad_norm"] > 0 and record["tokens_per_s"] > 0
        assert 0 < record["learning_rate"] <= HPARAMS["learning_rate"]
    # Linear decay without warmup: the learning rate only goes down.
    rates = [r["learning_rate"] for r in train_records]
    assert rates == sorted(rates, reverse=True) and rates[0] > rates[-1]
    evals = [r for r in records if "eval_loss" in r]
    assert [r["step"] for r in evals] == list(range(SAVE_STEPS, MAX_STEPS + 1, SAVE_STEPS))
    # The final checkpoint's evaluation is the result's eval loss, not a second pass.
    assert finished.result["eval_loss"] == pytest.approx(evals[-1]["eval_loss"], abs=1e-6)


def test_tensorboard_event_files_hold_the_training_loss(finished):
    assert finished.result["tensorboard_uri"] == store.to_uri(finished.out / "tensorboard")
    assert list((finished.out / "tensorboard").glob("events.out.tfevents.*"))
    board = tensorboard_losses(finished.out)
    assert [step for step, _ in board] == list(range(1, MAX_STEPS + 1))
    for (_, logged), (_, written) in zip(loss_curve(finished.out), board, strict=True):
        assert written == pytest.approx(logged, abs=1e-6)


def test_the_task_log_has_a_progress_line_per_logging_interval(finished):
    progress = [line for line in finished.lines if line.startswith("step ")]
    assert len(progress) == MAX_STEPS
    pattern = rf"step (\d+)/{MAX_STEPS} loss \d+\.\d{{4}} lr \d\.\d{{2}}e-0\d tokens/s \d+ eta \d+s"
    assert [int(re.fullmatch(pattern, line).group(1)) for line in progress] == list(range(1, MAX_STEPS + 1))
    assert progress[-1].endswith("eta 0s")
    assert f"checkpoint-{SAVE_STEPS} committed" in finished.lines


def test_merge_adapter_writes_a_merged_model_equal_to_base_plus_adapter(finished, tiny_model_dir):
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    merged_dir = finished.out / "merged"
    assert finished.result["merged_uri"] == store.to_uri(merged_dir)
    assert (merged_dir / "model.safetensors").exists() and (merged_dir / "tokenizer.json").exists()
    merged = AutoModelForCausalLM.from_pretrained(merged_dir)
    assert not any("lora" in name for name, _ in merged.named_parameters())
    adapted = PeftModel.from_pretrained(
        AutoModelForCausalLM.from_pretrained(tiny_model_dir), finished.out / "adapter"
    )
    tokens = torch.tensor([[1, 5, 9, 17, 33, 65]])
    with torch.no_grad():
        torch.testing.assert_close(merged(tokens).logits, adapted.eval()(tokens).logits, rtol=1e-4, atol=1e-5)


def test_hparams_refuse_a_save_interval_below_one():
    with pytest.raises(ValueError, match="save_steps"):
        HParams(save_steps=0)
    with pytest.raises(ValueError, match="hparams 't': save_steps must be 1 or more"):
        ResolvedHParams.model_validate({**HPARAMS, "save_steps": 0})
    with pytest.raises(ValueError, match="hparams 't': save_total_limit must be 1 or more"):
        ResolvedHParams.model_validate({**HPARAMS, "save_total_limit": 0})
    defaults = ResolvedHParams.model_validate(
        {k: v for k, v in HPARAMS.items() if k not in ("save_steps", "save_total_limit", "merge_adapter")}
    )
    assert (defaults.save_steps, defaults.save_total_limit, defaults.merge_adapter) == (100, 2, False)


def test_sigterm_stops_setup_at_once_but_only_flags_a_running_training():
    before = signal.getsignal(signal.SIGTERM)
    started = time.monotonic()
    with (
        pytest.raises(Preempted, match="before training started; nothing was saved"),
        Preemption().installed(),
    ):
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(5)  # the handler raises in here
    assert time.monotonic() - started < 4
    with Preemption().installed() as preemption:
        preemption.phase = "training"
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(0.05)
        assert preemption.requested  # the checkpoint callback saves at the next step boundary
    assert signal.getsignal(signal.SIGTERM) is before


# -- resume -----------------------------------------------------------------------------------------


def test_a_retry_resumes_from_the_newest_intact_checkpoint_and_ignores_half_written_ones(
    finished, tiny_model_dir, dataset_dir, tmp_path
):
    job = make_job(tmp_path, tiny_model_dir, dataset_dir)
    here = paths(job)
    shutil.copytree(finished.checkpoints, here.checkpoints)
    # checkpoint-8 had a file changed after its commit; checkpoint-9 was being written when the
    # process died (no manifest). Neither may be resumed from.
    (here.checkpoints / "checkpoint-8" / "adapter_model.safetensors").write_bytes(b"torn write")
    half = here.checkpoints / "checkpoint-9"
    shutil.copytree(here.checkpoints / "checkpoint-6", half)
    (half / "manifest.json").unlink()

    result = execute("train", train, job)
    assert result["resumed_from_step"] == 6 and result["steps"] == MAX_STEPS
    assert not half.exists()
    # The torn checkpoint-8 was removed and written again by the resumed run.
    assert checkpoints.problem(here.checkpoints / "checkpoint-8", fingerprint(job)) is None
    assert_same_training(SimpleNamespace(result=result, out=here.out), finished, resumed_from=6)
    assert_logs_continue_without_repeats(here.out)


def test_a_full_fine_tune_saves_the_model_and_resumes_too(tiny_model_dir, dataset_dir, tmp_path):
    from safetensors.torch import load_file

    job = make_job(tmp_path, tiny_model_dir, dataset_dir, method="full", max_steps=4, save_steps=2)
    first = execute("train", train, job)
    here = paths(job)
    assert first["model_uri"] and first["adapter_uri"] is None and first["merged_uri"] is None
    weights = load_file(here.out / "model" / "model.safetensors")
    # A retry of a run that died after its last checkpoint: the output was never committed.
    store.remove(store.join(job.output, "manifest.json"))
    shutil.rmtree(here.checkpoints / "checkpoint-4")
    again = execute("train", train, job)
    assert again["resumed_from_step"] == 2 and again["steps"] == 4
    resumed = load_file(here.out / "model" / "model.safetensors")
    assert all((weights[name] - resumed[name]).abs().max() <= 1e-6 for name in weights)


def _newest_manifest_or_fail(root: Path, process: subprocess.Popen, timeout: float = 300) -> None:
    deadline = time.monotonic() + timeout
    while not list(root.glob("checkpoint-*/manifest.json")):
        assert process.poll() is None, "training ended before its first checkpoint was committed"
        assert time.monotonic() < deadline, "no checkpoint committed in time"
        time.sleep(0.02)
    assert process.poll() is None, "training finished before it could be interrupted; raise MAX_STEPS"


@pytest.mark.slow
def test_a_killed_training_resumes_from_its_last_committed_checkpoint(
    finished, tiny_model_dir, dataset_dir, tmp_path
):
    job = make_job(tmp_path, tiny_model_dir, dataset_dir)
    here = paths(job)
    spec = tmp_path / "train.json"
    spec.write_text(job.model_dump_json())
    command = [sys.executable, "-m", "tasks.train", "--job", str(spec)]
    doomed = subprocess.Popen(command, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    _newest_manifest_or_fail(here.checkpoints, doomed)
    doomed.kill()  # SIGKILL: no handler runs, nothing is flushed
    doomed.wait()
    assert not store.is_committed(job.output)
    last = checkpoints.committed(here.checkpoints)[-1][0]

    retry = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=600)
    assert retry.returncode == 0, retry.stderr[-3000:]
    result = json.loads(retry.stdout.strip().splitlines()[-1])
    assert result["resumed_from_step"] == last and result["steps"] == MAX_STEPS
    # The global step continues: the retry's first progress line is the step after the checkpoint.
    first_line = re.search(rf"step (\d+)/{MAX_STEPS} ", retry.stderr)
    assert first_line and int(first_line.group(1)) == last + 1
    assert_same_training(SimpleNamespace(result=result, out=here.out), finished, resumed_from=last)
    assert_logs_continue_without_repeats(here.out)


@pytest.mark.slow
def test_sigterm_to_the_task_commits_a_checkpoint_fails_the_step_and_the_retry_resumes(
    finished, tiny_model_dir, dataset_dir, tmp_path
):
    """The Airflow task process is signalled, as a worker shutdown does; the local backend forwards it."""
    job = make_job(tmp_path, tiny_model_dir, dataset_dir)
    here = paths(job)
    spec = tmp_path / "train.json"
    spec.write_text(job.model_dump_json())
    task = (
        "import sys; from tasks.backends.local import run_step; "
        "run_step(['python', '-m', 'tasks.train', '--job', sys.argv[1]])"
    )
    env = {**os.environ, "TUNERFLOW_LOCK_DIR": str(tmp_path / "locks"), "TUNERFLOW_STOP_GRACE_S": "300"}
    process = subprocess.Popen(
        [sys.executable, "-c", task, str(spec)],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    _newest_manifest_or_fail(here.checkpoints, process)
    process.send_signal(signal.SIGTERM)
    output, _ = process.communicate(timeout=300)
    assert process.returncode != 0

    error = store.read_json(store.join(job.output, "error.json"))
    match = re.fullmatch(
        r"preempted at step (\d+); checkpoint-(\d+) committed, a retry resumes from it", error["message"]
    )
    assert match and match.group(1) == match.group(2), error
    step = int(match.group(1))
    assert step < MAX_STEPS and f"preempted at step {step}" in output  # the task's failure says why
    assert checkpoints.problem(here.checkpoints / f"checkpoint-{step}", fingerprint(job)) is None
    assert checkpoints.committed(here.checkpoints)[-1][0] == step

    result = execute("train", train, job)
    assert result["resumed_from_step"] == step and result["steps"] == MAX_STEPS
    assert not store.exists(store.join(job.output, "error.json"))
    assert_same_training(SimpleNamespace(result=result, out=here.out), finished, resumed_from=step)
    assert_logs_continue_without_repeats(here.out)


def test_training_on_an_s3_store_commits_checkpoints_there_and_resumes_on_a_fresh_machine(
    tiny_model_dir, dataset_dir, tmp_path, s3_store_root, monkeypatch
):
    """The train step against moto's S3 server: checkpoints and the output are uploaded; a retry on
    another machine (empty local cache) lists the checkpoints in the bucket, skips one whose object
    changed after its commit, fetches the newest intact one (sha256-checked) and resumes from it."""
    from safetensors.torch import load_file

    from tasks.storage import s3

    data_uri = store.join(s3_store_root, "datasets", "tuna")
    shutil.copytree(dataset_dir, store.local_dir(data_uri), dirs_exist_ok=True)
    store.commit(data_uri, {"name": "tuna"})
    local = make_job(tmp_path, tiny_model_dir, dataset_dir, max_steps=4, save_steps=2, save_total_limit=3)
    job = TrainSpec.model_validate(
        {
            **stored(local),
            "store_root": s3_store_root,
            "output": store.join(s3_store_root, "jobs", "j", "train"),
            "dataset": {"name": "tuna", "kind": "chat", "uri": data_uri},
        }
    )
    first = execute("train", train, job)
    ckpt_uri = checkpoints.checkpoints_uri(stored(job))
    assert first["adapter_uri"] == store.join(job.output, "adapter")
    assert first["checkpoints"] == {"uri": ckpt_uri, "steps": [2, 4], "save_steps": 2}
    assert store.list_dir(ckpt_uri) == ["checkpoint-2", "checkpoint-4"]
    assert all(store.is_committed(store.join(ckpt_uri, n)) for n in ("checkpoint-2", "checkpoint-4"))
    weights = load_file(store.fetch(first["adapter_uri"]) / "adapter_model.safetensors")

    # The retry of a try that died after its last checkpoint, on another machine: the output was never
    # committed, and checkpoint-4's weights object changed after its commit.
    store.remove(store.join(job.output, store.MANIFEST))
    bucket, key = s3.split(store.join(ckpt_uri, "checkpoint-4", "adapter_model.safetensors"))
    s3.client().put_object(Bucket=bucket, Key=key, Body=b"torn write")
    monkeypatch.setenv("TUNERFLOW_CACHE_DIR", str(tmp_path / "other-machine"))
    again = execute("train", train, job)
    assert again["resumed_from_step"] == 2 and again["steps"] == 4
    assert store.verify(store.join(ckpt_uri, "checkpoint-4")) == [], "rewritten by the resumed run"
    shutil.rmtree(tmp_path / "other-machine")
    resumed = load_file(store.fetch(again["adapter_uri"]) / "adapter_model.safetensors")
    assert all((weights[name] - resumed[name]).abs().max() <= 1e-5 for name in weights)


def run_train_command(job: TrainSpec, tmp_path: Path, env: dict) -> tuple[subprocess.CompletedProcess, dict]:
    """`python -m tasks.train --job <spec>` as a backend runs it; (the process, its one result line)."""
    spec = tmp_path / "train.json"
    spec.write_text(job.model_dump_json())
    done = subprocess.run(
        [sys.executable, "-m", "tasks.train", "--job", str(spec)],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    result_lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    assert len(result_lines) == 1, done.stdout
    return done, json.loads(result_lines[0])


def test_two_processes_train_data_parallel_under_torchrun_and_rank_0_alone_commits(
    tiny_model_dir, dataset_dir, tmp_path
):
    """TUNERFLOW_NPROC=2 stands in for a pod with two GPUs: the same command re-executes itself under
    torchrun (gloo on CPU). The global batch stays batch_size (2 processes x micro batch 2, no
    accumulation), every checkpoint holds both processes' RNG states, and only rank 0 writes logs,
    outputs and the result line."""
    job = make_job(tmp_path, tiny_model_dir, dataset_dir)
    here = paths(job)
    done, result = run_train_command(job, tmp_path, {**os.environ, "TUNERFLOW_NPROC": "2"})
    assert "launching 2 processes" in done.stderr
    assert result["steps"] == MAX_STEPS and store.committed_result(job.output) == result
    assert [step for step, _ in loss_curve(here.out)] == list(range(1, MAX_STEPS + 1))
    assert "global batch 4 = 2 process(es) x micro batch 2 x accumulation 1" in done.stderr
    for step, directory in checkpoints.committed(here.checkpoints):
        listed = store.read_json(store.join(store.uri_of(directory), store.MANIFEST))["files"]
        assert {"rng_state_0.pth", "rng_state_1.pth"} <= set(listed), step
    adapter = here.out / "adapter"
    assert (adapter / "adapter_model.safetensors").exists()
    assert not (adapter / "training_args.bin").exists()
    assert (here.out / "merged" / "model.safetensors").exists()


@gpu_test("deepspeed", devices=2)
@pytest.mark.parametrize("stage", ["zero2", "zero3"])
def test_two_gpus_launch_under_torchrun_with_deepspeed(tiny_model_dir, dataset_dir, tmp_path, stage):
    job = make_job(tmp_path, tiny_model_dir, dataset_dir, method="full", deepspeed=stage)
    env = {key: value for key, value in os.environ.items() if key != "TUNERFLOW_NPROC"}
    done, result = run_train_command(job, tmp_path, env)
    assert f"launching {cuda_devices()} processes" in done.stderr
    assert result["steps"] == MAX_STEPS
    assert (paths(job).out / "model" / "model.safetensors").exists()


@gpu_test("bitsandbytes")
def test_qlora_merge_reloads_the_base_unquantized(tiny_model_dir, dataset_dir, tmp_path):
    from safetensors.torch import load_file

    job = make_job(tmp_path, tiny_model_dir, dataset_dir, method="qlora", save_steps=MAX_STEPS)
    result = execute("train", train, job)
    merged = load_file(str(store.fetch(result["merged_uri"]) / "model.safetensors"))
    assert merged and all(tensor.dtype.is_floating_point for tensor in merged.values())
    assert not any("lora_" in name or "absmax" in name for name in merged), "an unmerged or 4-bit tensor"
