"""train: the job spec `plan_jobs` writes and the result the train step commits."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from tasks.config.hparams import ResolvedHParams
from tasks.config.scoring import ScoringConfig
from tasks.config.training import TrainingConfig
from tasks.contracts.base import Contract, OpenContract
from tasks.contracts.job import JobSpec


class TrainSpec(JobSpec):
    """What `python -m tasks.train` reads."""

    step: Literal["train"] = Field("train", description="The step this spec is for.")
    hparams: ResolvedHParams = Field(description="The hyperparameter group, presets resolved.")
    training: TrainingConfig = Field(description="Training type and method.")
    scoring: ScoringConfig | None = Field(
        None,
        description="The experiment's scoring settings: GRPO rewards with hparams.grpo_reward, else "
        "scoring.primary, and the llm_judge reward reads scoring.judge. Unset in specs written before GRPO.",
    )
    checkpoints: str | None = Field(
        None,
        description="Checkpoints prefix; by default `checkpoints/` beside the output. The rounds of one "
        "trial share their first round's, so a later round resumes where the earlier one stopped.",
    )
    stop_at_step: int | None = Field(
        None,
        ge=1,
        description="Successive halving: stop at this global step (checkpoint committed, validation loss "
        "measured) while the learning-rate schedule still spans max_steps; a later round continues.",
    )


class CheckpointsInfo(Contract):
    """Where a job's committed checkpoints are."""

    uri: str = Field(description="The checkpoints prefix.")
    steps: list[int] = Field(description="Steps of the checkpoints kept.")
    save_steps: int = Field(description="Optimizer steps between checkpoints.")


class TrainResult(OpenContract):
    """What the train step commits. Only the weights are required: they are what every reader needs,
    and every version wrote them."""

    adapter_uri: str | None = Field(
        description="The PEFT adapter, for lora, qlora, adalora, ia3 and the prompt-learning methods."
    )
    model_uri: str | None = Field(description="The whole model, for a full or freeze fine-tune.")
    job_id: str | None = Field(None, description="Store key of the job.")
    label: str | None = Field(None, description="`dataset|model|hparams`.")
    status: Literal["succeeded"] = Field("succeeded", description="A committed training succeeded.")
    method: str | None = Field(None, description="The training.method (full, freeze, lora, qlora, ...).")
    merged_uri: str | None = Field(None, description="Base plus adapter, with `merge_adapter`.")
    metrics_uri: str | None = Field(None, description="metrics.jsonl: the training curves.")
    tensorboard_uri: str | None = Field(None, description="TensorBoard event files, when installed.")
    train_loss: float | None = Field(None, description="Mean training loss over every step.")
    eval_loss: float | None = Field(
        None,
        description="Validation loss of the saved weights: at the end of training, or at best_step with "
        "early stopping.",
    )
    steps: int | None = Field(None, description="Optimizer steps done.")
    resumed_from_step: int | None = Field(None, description="The checkpoint a retry resumed from.")
    checkpoints: CheckpointsInfo | None = Field(None, description="The committed checkpoints.")
    runtime_s: float | None = Field(None, description="Seconds this process trained.")
    tokens_per_s: float | None = Field(None, description="Training tokens per second in this process.")
    stopped: str | None = Field(
        None,
        description="Why training ended before max_steps: halving, early stopping or the time limit, "
        "with the step.",
    )
    best_step: int | None = Field(None, description="Early stopping: the step of the weights kept.")
    device: str | None = Field(None, description="cuda or cpu: what device_hours count.")
    devices: int | None = Field(None, description="GPUs (or CPU cores) the job trained on.")
    device_hours: float | None = Field(
        None,
        description="devices x training hours over every try of this job's checkpoints; a halving round "
        "resumes the trial's checkpoints, so its figure includes the earlier rounds'.",
    )
    merged_from: list[str] | None = Field(None, description="A merged candidate: the labels of its parts.")
    merge_method: str | None = Field(None, description="A merged candidate: how its parts were merged.")
