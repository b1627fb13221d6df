"""The train step's Trainer callbacks: metrics and progress, committed checkpoints, and the stops.

`Progress` writes metrics.jsonl and the progress line and keeps the job's training time over every try;
`CommitCheckpoints` commits each checkpoint the Trainer wrote and prunes the old ones, never early
stopping's best; `Stops` ends training at a step with a checkpoint committed, for successive halving
(`stop_at_step`) and the time limit (`max_train_minutes`). Early stopping itself is transformers'
`EarlyStoppingCallback`, added by the trainer.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from tasks.training import checkpoints

log = logging.getLogger("tunerflow.train")


class AlreadyStopped(Exception):
    """The resumed checkpoint is already where training stops: nothing is left to train."""


@dataclass(frozen=True)
class StopRules:
    """When training ends before max_steps, besides early stopping."""

    stop_at_step: int | None
    max_train_minutes: float | None
    # Evaluate at a stop: only with a validation split.
    evaluates: bool
    # Early stopping on: every new best validation loss gets a checkpoint, which is then kept.
    keeps_best: bool


@dataclass(frozen=True)
class Callbacks:
    progress: Any
    stops: Any
    committer: Any

    def all(self) -> list[Any]:
        # Stops asks for a save before CommitCheckpoints adds a loss record to every save.
        return [self.progress, self.stops, self.committer]


def distributed_state() -> Any:
    """accelerate's process state, shared with the Trainer: one process, or the torchrun workers."""
    from accelerate import PartialState

    return PartialState()


def build_callbacks(
    out: Path,
    root: Path,
    fingerprint: str,
    keep: int,
    stop_requested: Callable[[], bool],
    elapsed_before: float,
    rules: StopRules,
) -> Callbacks:
    """The step's callbacks; `stop_requested` says whether SIGTERM asked for a checkpoint and a stop."""
    from transformers import TrainerCallback

    metrics_path = out / "metrics.jsonl"

    class Progress(TrainerCallback):
        """Writes metrics.jsonl and one readable progress line per logging interval.

        Rates and the ETA count this process's steps and tokens only: after a resume, the steps done
        before it took no time here.
        """

        def on_train_begin(self, args, state, control, **kwargs):
            self.started = time.perf_counter()
            self.start_step = state.global_step
            self.start_tokens = state.num_input_tokens_seen or 0

        def elapsed(self) -> float:
            """Training seconds over every process that worked on this job."""
            return elapsed_before + time.perf_counter() - self.started

        def on_log(self, args, state, control, logs=None, **kwargs):
            logs = dict(logs or {})
            if not state.is_world_process_zero or "train_loss" in logs:
                # The Trainer's closing summary: after a resume its train_loss averages this process's
                # steps over all steps, so the step result carries the corrected value instead.
                return
            session = max(time.perf_counter() - self.started, 1e-9)
            tokens = (state.num_input_tokens_seen or 0) - self.start_tokens
            record = {"step": state.global_step, "epoch": state.epoch, "elapsed_s": round(self.elapsed(), 2)}
            record.update(logs)
            if tokens:
                record["tokens_per_s"] = round(tokens / session, 1)
            with open(metrics_path, "a") as handle:
                handle.write(json.dumps(record) + "\n")
            if "loss" in logs:
                done_here = state.global_step - self.start_step
                remaining = state.max_steps - state.global_step
                eta = session / done_here * remaining if done_here else float("nan")
                log.info(
                    "step %d/%d loss %.4f lr %.2e tokens/s %.0f eta %.0fs",
                    state.global_step,
                    state.max_steps,
                    logs["loss"],
                    logs.get("learning_rate", 0.0),
                    record.get("tokens_per_s", 0.0),
                    eta,
                )

    progress = Progress()

    class Stops(TrainerCallback):
        """Halving's stop and the time limit: at a step end, evaluate, save (committed) and stop, with
        the reason in `reason`. With early stopping, a new best validation loss is saved at once, so the
        best weights are always a checkpoint even when eval_steps is shorter than save_steps."""

        def __init__(self) -> None:
            self.reason: str | None = None

        def _reason(self, state) -> str | None:
            step = state.global_step
            if step >= state.max_steps:
                return None
            if rules.stop_at_step is not None and step >= rules.stop_at_step:
                return f"halving: stopped at step {step} of {state.max_steps}"
            if rules.max_train_minutes is not None and progress.elapsed() >= rules.max_train_minutes * 60:
                return f"time limit of {rules.max_train_minutes:g} min reached at step {step}"
            return None

        def on_train_begin(self, args, state, control, **kwargs):
            # A retry resumed from the checkpoint its stop committed (the try died saving its outputs):
            # the Trainer trains a step before it looks at should_training_stop, so leave it here, with
            # the checkpoint's weights and state loaded.
            self.reason = self._reason(state)
            if self.reason:
                raise AlreadyStopped(self.reason)

        def on_step_end(self, args, state, control, **kwargs):
            if self.reason:
                return control
            self.reason = self._reason(state)
            if not self.reason:
                return control
            log.info("%s: saving a checkpoint", self.reason)
            control.should_save = control.should_training_stop = True
            control.should_evaluate = control.should_evaluate or rules.evaluates
            return control

        def on_evaluate(self, args, state, control, metrics=None, **kwargs):
            loss = (metrics or {}).get("eval_loss")
            # Strictly lower, as the Trainer's own choice of the best checkpoint (_determine_best_metric).
            best = state.best_metric
            if rules.keeps_best and loss is not None and (best is None or loss < best):
                control.should_save = True
            return control

    class CommitCheckpoints(TrainerCallback):
        """Commits each checkpoint the Trainer wrote (manifest last), prunes, and honours SIGTERM."""

        def __init__(self) -> None:
            self.flush: Callable[[], None] = lambda: None
            self.last_committed: int | None = None

        def on_step_end(self, args, state, control, **kwargs):
            if stop_requested():
                control.should_save = True
                control.should_training_stop = True
            if control.should_save:
                # A loss record at every checkpoint: the losses logged before a resume then cover every
                # step up to it, so the resumed run's average loss can be rebuilt from them.
                control.should_log = True
            return control

        def on_save(self, args, state, control, **kwargs):
            step = state.global_step
            directory = root / f"checkpoint-{step}"
            # Every process writes part of a checkpoint (its RNG state; its shard under ZeRO-3): commit
            # once all of them have finished, from rank 0 only.
            distributed_state().wait_for_everyone()
            if not state.is_world_process_zero:
                self.last_committed = step
                if stop_requested():
                    control.should_training_stop = True
                return control
            self.flush()
            logs = [metrics_path, *sorted((out / "tensorboard").rglob("*"))]
            checkpoints.snapshot(logs, out, directory)
            checkpoints.commit(
                directory,
                {
                    "step": step,
                    "max_steps": state.max_steps,
                    "fingerprint": fingerprint,
                    "elapsed_s": round(progress.elapsed(), 2),
                    "tokens_seen": state.num_input_tokens_seen or 0,
                    "committed_at": datetime.now(UTC).isoformat(timespec="seconds"),
                },
            )
            self.last_committed = step
            # The Trainer set best_model_checkpoint while saving, before this callback: early stopping
            # loads those weights at the end, so pruning must leave them.
            best = state.best_model_checkpoint
            removed = checkpoints.prune(root, keep, protect={checkpoints.step_of(Path(best))} if best else ())
            log.info("checkpoint-%d committed%s", step, f"; removed {removed}" if removed else "")
            if stop_requested():
                control.should_training_stop = True
            return control

    return Callbacks(progress, Stops(), CommitCheckpoints())
