"""OpenAI's fine-tuning objects as this API returns them (field names and shapes as OpenAI's reference
gives them), the error it raises, and the cursor pagination every list shares."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Literal, TypeVar

from pydantic import BaseModel, Field

MAX_LIMIT = 100
ORGANIZATION = "tunerflow"
JobStatus = Literal["validating_files", "queued", "running", "succeeded", "failed", "cancelled"]


class ApiError(ValueError):
    """A request this API refuses: OpenAI's error shape with `status` as the HTTP status."""

    def __init__(
        self,
        message: str,
        param: str | None = None,
        code: str | None = None,
        status: int = 400,
        kind: str = "invalid_request_error",
    ) -> None:
        super().__init__(message)
        self.message, self.param, self.code, self.status, self.kind = message, param, code, status, kind

    def body(self) -> dict[str, Any]:
        """`{"error": {"message", "type", "param", "code"}}`, what OpenAI's clients parse."""
        return {"error": {"message": self.message, "type": self.kind, "param": self.param, "code": self.code}}


def not_found(what: str, ident: str, param: str | None = None) -> ApiError:
    return ApiError(f"No {what} with id '{ident}'", param=param, code="not_found", status=404)


class FileObject(BaseModel):
    """An uploaded file (`object: "file"`)."""

    id: str = Field(description="`file-<hex>`; also the name the dataset is registered under.")
    object: Literal["file"] = Field("file", description="Always `file`.")
    bytes: int = Field(description="Its size in bytes.")
    created_at: int = Field(description="Unix seconds of the upload.")
    filename: str = Field(description="The name it was uploaded with.")
    purpose: str = Field(description="`fine-tune`, or `fine-tune-results` for a job's metrics.")
    status: Literal["uploaded", "processed", "error"] = Field("processed", description="Checked and stored.")
    status_details: str | None = Field(None, description="Unused: a refused file is not stored.")
    expires_at: int | None = Field(None, description="Unused: files do not expire.")


class JobError(BaseModel):
    """Why a job failed."""

    code: str = Field(description="A machine-readable code.")
    message: str = Field(description="The failing step's message.")
    param: str | None = Field(None, description="The request field at fault, when one is.")


class Hyperparameters(BaseModel):
    """The hyperparameters the job trains with, "auto" resolved to the preset's values."""

    n_epochs: int | Literal["auto"] | None = Field(None, description="Epochs over the training file.")
    batch_size: int | Literal["auto"] | None = Field(None, description="Rows per optimizer step.")
    learning_rate_multiplier: float | Literal["auto"] | None = Field(
        None, description="Factor on the preset's learning rate."
    )
    beta: float | Literal["auto"] | None = Field(None, description="DPO's beta (dpo only).")


class FineTuningJob(BaseModel):
    """A fine-tuning job (`object: "fine_tuning.job"`): one `finetune_experiment` run."""

    id: str = Field(description="`ftjob-<hex>`, also the DAG run id.")
    object: Literal["fine_tuning.job"] = Field("fine_tuning.job", description="Always `fine_tuning.job`.")
    created_at: int = Field(description="Unix seconds of the request.")
    error: JobError | None = Field(None, description="Why it failed; null otherwise.")
    fine_tuned_model: str | None = Field(
        None, description="`<registry>-v<N>`: the registry version the run registered; null until then."
    )
    finished_at: int | None = Field(None, description="Unix seconds the run ended; null until then.")
    hyperparameters: Hyperparameters = Field(description="The resolved hyperparameters.")
    model: str = Field(description="The base model as requested.")
    organization_id: str = Field(ORGANIZATION, description="Always `tunerflow`.")
    result_files: list[str] = Field(default_factory=list, description="The job's metrics file, once done.")
    seed: int = Field(description="The training seed.")
    status: JobStatus = Field(description="From the DAG run and its tasks.")
    trained_tokens: int | None = Field(None, description="Training tokens seen, when the train step says.")
    training_file: str = Field(description="The training file's id.")
    validation_file: str | None = Field(None, description="The validation file's id.")
    estimated_finish: int | None = Field(None, description="Unused.")
    integrations: list[Any] = Field(default_factory=list, description="Unused.")
    metadata: dict[str, str] | None = Field(None, description="As given in the request.")
    method: dict[str, Any] = Field(description="`{type, supervised|dpo: {hyperparameters}}`.")
    user_provided_suffix: str | None = Field(None, description="The request's suffix.")


class JobEvent(BaseModel):
    """One line of a job's progress (`object: "fine_tuning.job.event"`)."""

    id: str = Field(description="Stable: derived from what it reports.")
    object: Literal["fine_tuning.job.event"] = Field("fine_tuning.job.event", description="Always this.")
    created_at: int = Field(description="Unix seconds it happened (estimated for a training step).")
    level: Literal["info", "warn", "error"] = Field("info", description="error for a failure.")
    message: str = Field(description="What happened.")
    data: dict[str, Any] | None = Field(None, description="A training step's metrics.")
    type: Literal["message", "metrics"] = Field("message", description="metrics for a training step.")


class CheckpointMetrics(BaseModel):
    """The metrics logged at or before a checkpoint's step."""

    step: float | None = Field(None, description="The checkpoint's step.")
    train_loss: float | None = Field(None, description="The last training loss logged by then.")
    valid_loss: float | None = Field(None, description="The last validation loss logged by then.")
    full_valid_loss: float | None = Field(None, description="Unused: no full validation pass.")
    train_mean_token_accuracy: float | None = Field(None, description="When the trainer logs it.")
    valid_mean_token_accuracy: float | None = Field(None, description="When the trainer logs it.")
    full_valid_mean_token_accuracy: float | None = Field(None, description="Unused.")


class JobCheckpoint(BaseModel):
    """A committed checkpoint (`object: "fine_tuning.job.checkpoint"`)."""

    id: str = Field(description="`ftckpt-<job hex>-<step>`.")
    object: Literal["fine_tuning.job.checkpoint"] = Field("fine_tuning.job.checkpoint", description="Always.")
    created_at: int = Field(description="Unix seconds it was committed.")
    fine_tuned_model_checkpoint: str = Field(description="Where the checkpoint is stored (a store URI).")
    fine_tuning_job_id: str = Field(description="The job's id.")
    metrics: CheckpointMetrics = Field(description="Metrics at its step.")
    step_number: int = Field(description="The optimizer step it holds.")


Item = TypeVar("Item", bound=BaseModel)


def check_limit(limit: int | None, default: int = 20) -> int:
    if limit is None:
        return default
    if not 1 <= limit <= MAX_LIMIT:
        raise ApiError(f"limit: {limit} is outside 1 to {MAX_LIMIT}", param="limit")
    return limit


def window(ids: Sequence[str], after: str | None, limit: int | None) -> tuple[list[str], bool]:
    """The ids of one page of a cursor list: the `limit` ids following `after` (in the given order), and
    whether more follow."""
    size = check_limit(limit)
    start = 0
    if after is not None:
        if after not in ids:
            raise ApiError(f"after: no item with id '{after}' in this list", param="after")
        start = list(ids).index(after) + 1
    return list(ids[start : start + size]), start + size < len(ids)


def page(items: Sequence[Item], after: str | None, limit: int | None, id_of: Callable[[Item], str]) -> dict:
    """OpenAI's list object: one page of `items` after the one whose id is `after`."""
    by_id = {id_of(item): item for item in items}
    chosen, more = window(list(by_id), after, limit)
    return listing([by_id[i] for i in chosen], more)


def listing(items: Sequence[BaseModel], has_more: bool) -> dict:
    """`{"object": "list", "data", "has_more", "first_id", "last_id"}`."""
    data = [item.model_dump(mode="json") for item in items]
    return {
        "object": "list",
        "data": data,
        "has_more": has_more,
        "first_id": data[0]["id"] if data else None,
        "last_id": data[-1]["id"] if data else None,
    }
