"""Step: train one job (dataset x base model x hyperparameter group). `python -m tasks.train --job ...`

Pretraining learns every token of packed text, SFT the tokens of every assistant answer, DPO from
preference pairs; full, LoRA or QLoRA. How each becomes a TRL trainer is `tasks.training.train_types`; this
module adds what makes a long run survivable and watchable.

Training is resumable (see docs/training.md): the Trainer writes a checkpoint every `save_steps`,
which counts once its manifest is written (`tasks.training.checkpoints`); a retry resumes from the newest
committed one with the optimizer, scheduler, RNG state, global step and logs of that step. SIGTERM
(a preempted pod, a killed Airflow task) saves and commits a checkpoint at the next step boundary,
then fails the step with a message saying where a retry resumes.

Training may end before max_steps and still succeed (`tasks.training.callbacks`): successive halving's
`stop_at_step` and the time limit commit a checkpoint where they stop (a later round or a retry resumes
from it), early stopping keeps the best checkpoint's weights; the result says which in `stopped`. Every
result records the device-hours of the job over every try and round.
"""

from __future__ import annotations

import contextlib
import gc
import json
import logging
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from tasks.config.training import ADAPTER_METHODS, MERGEABLE_ADAPTERS, VISION_TYPES, dataset_kind_problem
from tasks.contracts.train import CheckpointsInfo, TrainResult, TrainSpec
from tasks.runtime.errors import StepError
from tasks.storage import store
from tasks.training import checkpoints
from tasks.training.base_models import load_model
from tasks.training.callbacks import AlreadyStopped, Callbacks, StopRules, build_callbacks, distributed_state
from tasks.training.peft_methods import save_weights
from tasks.training.train_types import build_trainer, resolve_precision, to_trl_rows

__all__ = ["Preempted", "Preemption", "read_split", "to_trl_rows", "train"]

log = logging.getLogger("tunerflow.train")


class Preempted(StepError):
    """SIGTERM stopped the training; the message says which checkpoint a retry resumes from."""


def read_split(dataset_uri: str, split: str) -> list[dict[str, Any]]:
    path = store.fetch(store.join(dataset_uri, f"{split}.jsonl"))
    with open(path) as handle:
        return [json.loads(line) for line in handle if line.strip()]


class Preemption:
    """Turns SIGTERM into "checkpoint at the next step boundary, then stop".

    Before training starts there is nothing to save, so the signal stops the step at once; during
    training it only sets a flag that the checkpoint callback reads between optimizer steps (a signal
    handler must not save a model half-way through a step); after training the step just finishes.
    """

    def __init__(self) -> None:
        self.requested = False
        self.phase = "setup"

    @contextlib.contextmanager
    def installed(self) -> Iterator[Preemption]:
        # Python only lets the main thread install handlers; a step run from a thread keeps the default.
        if threading.current_thread() is not threading.main_thread():
            yield self
            return
        previous = signal.signal(signal.SIGTERM, self._handle)
        try:
            yield self
        finally:
            signal.signal(signal.SIGTERM, previous)

    def _handle(self, signum: int, frame: Any) -> None:
        first = not self.requested
        self.requested = True
        if self.phase == "setup":
            raise Preempted("preempted before training started; nothing was saved, a retry starts over")
        if first:
            log.warning("SIGTERM during %s: saving a checkpoint at the next step boundary", self.phase)


def _flush_tensorboard(callbacks: list[Any]) -> None:
    for callback in callbacks:
        writer = getattr(callback, "tb_writer", None)
        if writer is not None:
            writer.flush()


def _release_memory() -> None:
    import torch

    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def _merge_adapter(
    job: TrainSpec, adapter_dir: Path, merged_dir: Path, precision: str, tokenizer: Any
) -> None:
    """merged/: the base reloaded unquantized with the saved adapter merged in. Reloading serves QLoRA
    (a 4-bit base cannot be merged in place) and ZeRO-3 (whose trainer holds shards) alike."""
    import torch

    cuda = torch.cuda.is_available()
    compute = resolve_precision(precision, cuda, cuda and torch.cuda.is_bf16_supported())
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(compute, torch.float32)
    model = load_model(job.model, job.store_root, str(adapter_dir), dtype=dtype)
    model.save_pretrained(merged_dir, safe_serialization=True)
    tokenizer.save_pretrained(merged_dir)


def _loss_sum_until(history: list[dict[str, Any]], step: int) -> float:
    """Sum of per-step training losses up to `step`, from the logged interval means."""
    total, previous = 0.0, 0
    for entry in history:
        if "loss" in entry and entry["step"] <= step:
            total += entry["loss"] * (entry["step"] - previous)
            previous = entry["step"]
    return total


def _tensorboard_available() -> bool:
    from transformers.integrations import is_tensorboard_available

    if is_tensorboard_available():
        return True
    log.warning("tensorboard is not installed: no TensorBoard event files (pip install tensorboard)")
    return False


def train(job: TrainSpec) -> TrainResult | None:
    """Fine-tune the base model on the dataset's train split; save the adapter (or full model). Returns
    None in the other processes of a torchrun launch: rank 0 alone reports."""
    problem = dataset_kind_problem(job.training.type, job.dataset.name, job.dataset.kind)
    if problem:
        raise StepError(problem)
    with Preemption().installed() as preemption:
        return _train(job, preemption)


def _early_stopping(job: TrainSpec, has_validation: bool) -> dict[str, Any]:
    """The TrainingArguments early stopping needs (none when it is off): the best checkpoint by the
    validation loss is tracked and its weights loaded at the end."""
    if job.hparams.early_stopping_patience is None:
        return {}
    if not has_validation:
        raise StepError(
            f"hparams '{job.hparams.name}': early_stopping_patience needs a validation split, and "
            f"dataset '{job.dataset.name}' has no validation rows; unset early_stopping_patience or "
            "give the dataset a validation split"
        )
    return {"load_best_model_at_end": True, "metric_for_best_model": "eval_loss", "greater_is_better": False}


def _stopped(callbacks: Callbacks, early: Any, state: Any, best_step: int | None) -> str | None:
    """Why training ended before max_steps, or None when it ran to the end."""
    if callbacks.stops.reason:
        return callbacks.stops.reason
    if early is None or state.global_step >= state.max_steps:
        return None
    if early.early_stopping_patience_counter >= early.early_stopping_patience:
        return (
            f"early stopping at step {state.global_step}: validation loss did not improve by more than "
            f"{early.early_stopping_threshold} for {early.early_stopping_patience} evaluations; "
            f"best step {best_step} kept"
        )
    return None


def _devices(trainer: Any) -> tuple[str, int]:
    """What device-hours count: GPUs over every process, or on CPU the threads torch computes with."""
    import torch

    processes = distributed_state().num_processes
    if torch.cuda.is_available():
        # One GPU per torchrun process; a single process sees all of them (n_gpu, DataParallel).
        return "cuda", processes * max(trainer.args.n_gpu, 1)
    return "cpu", processes * torch.get_num_threads()


def _train(job: TrainSpec, preemption: Preemption) -> TrainResult | None:
    import torch
    from transformers import EarlyStoppingCallback, PrinterCallback

    hp, training = job.hparams, job.training
    out = store.local_dir(job.output)
    # tasks.training.checkpoints keys its directory and fingerprint on the spec as stored.
    stored = job.model_dump(mode="json")
    # On S3 the local mirror of the checkpoints prefix: each checkpoint is uploaded when committed.
    root = store.local_dir(checkpoints.checkpoints_uri(stored))
    fingerprint = checkpoints.fingerprint(stored)

    dist = distributed_state()
    # Rank 0 first: it removes checkpoints that cannot be resumed, then the others find the same newest one.
    # Then each node's first process (on an s3:// store each node has its own mirror): it downloads the
    # checkpoint once, and the other processes of that node find it verified instead of racing to fetch it.
    with dist.main_process_first(), dist.local_main_process_first():
        resume = checkpoints.resumable(root, fingerprint)
    if resume is not None:
        if dist.is_main_process:
            checkpoints.restore_logs(resume[0], out)
        log.info("resuming from %s (step %d)", resume[0].name, resume[1]["step"])

    torch.manual_seed(hp.seed)
    train_rows = read_split(job.dataset.uri, "train")
    validation_rows = read_split(job.dataset.uri, "validation")
    best_kept = _early_stopping(job, bool(validation_rows))
    tensorboard = _tensorboard_available()
    common = {
        "output_dir": str(root),
        "logging_steps": hp.logging_steps,
        # Checkpoints count once committed, so pruning is ours (CommitCheckpoints): the Trainer's
        # save_total_limit would count a half-written checkpoint and delete a committed one.
        "save_strategy": "steps",
        "save_steps": hp.save_steps,
        "save_total_limit": None,
        # The validation loss every eval_steps (by default at every checkpoint): the curve in
        # metrics.jsonl and TensorBoard, and what early stopping watches.
        "eval_strategy": "steps" if validation_rows else "no",
        "eval_steps": (hp.eval_steps or hp.save_steps) if validation_rows else None,
        **best_kept,
        "report_to": ["tensorboard"] if tensorboard else [],
        "logging_dir": str(out / "tensorboard"),
        "dataloader_num_workers": 0,
        "include_num_input_tokens_seen": "non_padding",
        "disable_tqdm": True,
    }
    rules = StopRules(job.stop_at_step, hp.max_train_minutes, bool(validation_rows), bool(best_kept))
    elapsed_before = resume[1]["elapsed_s"] if resume else 0.0
    callbacks = build_callbacks(
        out, root, fingerprint, hp.save_total_limit, lambda: preemption.requested, elapsed_before, rules
    )
    early = None
    if best_kept:
        early = EarlyStoppingCallback(hp.early_stopping_patience, hp.early_stopping_threshold)
    trainer, tokenizer = build_trainer(
        job, train_rows, validation_rows, common, [*callbacks.all(), *([early] if early else [])]
    )
    adapter = training.method in ADAPTER_METHODS
    callbacks.committer.flush = lambda: _flush_tensorboard(trainer.callback_handler.callbacks)
    # Metrics go to metrics.jsonl and the log; stdout carries only the step's JSON result line.
    trainer.remove_callback(PrinterCallback)

    preemption.phase = "training"
    started = time.perf_counter()
    try:
        outcome = trainer.train(resume_from_checkpoint=str(resume[0]) if resume else None)
        this_process_loss = outcome.training_loss
    except AlreadyStopped as stop:
        log.info("resumed where training stops (%s): nothing to train", stop)
        this_process_loss = 0.0
    runtime = time.perf_counter() - started
    elapsed = callbacks.progress.elapsed()
    preemption.phase = "saving the outputs"
    state = trainer.state
    if preemption.requested and state.global_step < state.max_steps:
        step = callbacks.committer.last_committed
        raise Preempted(
            f"preempted at step {state.global_step}; checkpoint-{step} committed, a retry resumes from it"
            if step == state.global_step
            else f"preempted at step {state.global_step} before a checkpoint was committed"
        )

    train_loss = this_process_loss
    resumed_from = resume[1]["step"] if resume else None
    if resumed_from is not None and state.global_step:
        # The Trainer averages only this process's losses (over all steps); add the earlier ones.
        train_loss += _loss_sum_until(state.log_history, resumed_from) / state.global_step
    eval_loss, best_step = None, None
    if best_kept and state.best_model_checkpoint:
        # The Trainer loaded the best checkpoint's weights at the end: they, and their loss, are the result.
        best_step = checkpoints.step_of(Path(state.best_model_checkpoint))
        eval_loss = state.best_metric
    elif validation_rows:
        # The last checkpoint's evaluation already measured the final weights; don't repeat it.
        at_end = [
            e["eval_loss"] for e in state.log_history if "eval_loss" in e and e["step"] == state.global_step
        ]
        eval_loss = at_end[-1] if at_end else trainer.evaluate()["eval_loss"]
    stopped = _stopped(callbacks, early, state, best_step)
    device, devices = _devices(trainer)
    weights_dir = out / ("adapter" if adapter else "model")
    # Every process calls it: under ZeRO-3 it gathers the shards; rank 0 writes safetensors.
    # build_trainer records what peft_methods prepared (a trainer built elsewhere has nothing special).
    save_weights(trainer, getattr(trainer, "tunerflow_prepared", None), weights_dir, dist.is_main_process)
    if not dist.is_main_process:
        return None
    tokenizer.save_pretrained(weights_dir)
    # A pickle beside the weights: nothing loads it, and the outputs stay safetensors and JSON.
    (weights_dir / "training_args.bin").unlink(missing_ok=True)
    merged_dir = None
    # A vision model's adapter is kept as it is: the merge loads causal language models only.
    if hp.merge_adapter and training.method in MERGEABLE_ADAPTERS and training.type not in VISION_TYPES:
        merged_dir = out / "merged"
        del trainer
        _release_memory()
        _merge_adapter(job, weights_dir, merged_dir, hp.precision, tokenizer)
    elif hp.merge_adapter:
        log.info(
            "merge_adapter: %s; nothing to merge (%s)",
            "virtual tokens are not weights" if adapter else "a full fine-tune is already a whole model",
            weights_dir,
        )

    tokens = (state.num_input_tokens_seen or 0) - (resume[1]["tokens_seen"] if resume else 0)
    return TrainResult(
        job_id=job.job_id,
        label=job.label,
        status="succeeded",
        method=training.method,
        adapter_uri=store.uri_of(weights_dir) if adapter else None,
        model_uri=None if adapter else store.uri_of(weights_dir),
        merged_uri=store.uri_of(merged_dir) if merged_dir else None,
        metrics_uri=store.uri_of(out / "metrics.jsonl"),
        tensorboard_uri=store.uri_of(out / "tensorboard") if tensorboard else None,
        train_loss=round(train_loss, 6),
        eval_loss=round(eval_loss, 6) if eval_loss is not None else None,
        steps=state.global_step,
        resumed_from_step=resumed_from,
        checkpoints=CheckpointsInfo(
            uri=store.uri_of(root),
            steps=[step for step, _ in checkpoints.committed(root)],
            save_steps=hp.save_steps,
        ),
        runtime_s=round(runtime, 2),
        tokens_per_s=round(tokens / runtime, 1) if runtime else None,
        stopped=stopped,
        best_step=best_step,
        device=device,
        devices=devices,
        device_hours=round(devices * elapsed / 3600, 6),
    )
