"""promote: what the gate is given and the decision it records."""

from __future__ import annotations

from typing import Any, Self

from pydantic import Field, model_validator

from tasks.contracts.base import Contract, OpenContract


class WinnerLineage(Contract):
    """The winner as the registry records it. Its parts stay as the job's specs gave them: the registry
    keeps lineage verbatim, whichever version wrote it."""

    job_id: str = Field(description="Store key of the winning job.")
    label: str | None = Field(None, description="Its label.")
    metrics: dict[str, float | None] = Field(default_factory=dict, description="Its PyTorch metrics.")
    model: dict[str, Any] = Field(default_factory=dict, description="The base model's catalog entry.")
    dataset: dict[str, Any] = Field(default_factory=dict, description="The prepared dataset it trained on.")
    hparams: dict[str, Any] = Field(default_factory=dict, description="Its hyperparameter group.")
    merged_from: list[str] | None = Field(None, description="A merged candidate: the labels of its parts.")
    merge_method: str | None = Field(None, description="A merged candidate: how its parts were merged.")


class ChampionScore(Contract):
    """The production model scored in this run on the winner's rows."""

    version: int = Field(description="The registry version scored.")
    metrics: dict[str, float | None] = Field(description="Its metrics.")
    scored_on: str | None = Field(None, description="The dataset scored on.")
    n: int | None = Field(None, description="Rows scored.")


class ApprovalDecision(Contract):
    """`approval.json`: what a person (or the timeout) answered to the run's approval task."""

    approved: bool = Field(description="The candidate may be promoted (Approve was chosen).")
    decided_by: str = Field(description="The responding user's name (else id), or `timeout`.")
    decided_at: str | None = Field(None, description="When the answer was given or the timeout applied.")
    chosen_options: list[str] = Field(default_factory=list, description="The options chosen.")
    timed_out: bool = Field(False, description="Nobody answered in time: the default (Reject) applied.")


class ApprovalRequest(Contract):
    """What the approval task asks, computed when it runs, or why it does not ask, or the answer an
    earlier try already recorded."""

    skip: str | None = Field(None, description="Why no approval is asked; the task skips itself.")
    answered: str | None = Field(
        None,
        description="The decision `approval.json` already holds, e.g. 'approved by admin at ...': a run's "
        "decision is made once, so a retried or cleared task ends with it instead of asking again.",
    )
    subject: str | None = Field(None, description="The question, e.g. 'Promote exp a|b|c to production?'.")
    body: str | None = Field(None, description="Markdown: leaderboard, champion comparison, answers.")
    timeout_hours: float | None = Field(None, description="Hours to wait before the default (Reject).")

    @model_validator(mode="after")
    def _asks_or_skips(self) -> Self:
        if self.skip is not None and self.answered is not None:
            raise ValueError("answered: an approval request either skips or was answered, not both")
        if self.skip is None and self.answered is None and (not self.subject or self.timeout_hours is None):
            raise ValueError(
                "subject: an approval request that does not skip needs a subject and timeout_hours"
            )
        return self


class PromotionJob(Contract):
    """What `tasks.registry.promotion.promote` is given."""

    store_root: str = Field(description="Root URI of the artifact store.")
    registry_name: str = Field(min_length=1, description="The registered model's name.")
    run_uri: str = Field(min_length=1, description="The run the winner comes from.")
    winner: WinnerLineage = Field(description="The winner and its lineage.")
    primary: str = Field("rouge_l", description="The metric compared.")
    margin: float = Field(0.0, description="How much the candidate must beat the champion by.")
    model_uri: str | None = Field(None, description="The merged or fully fine-tuned model.")
    adapter_uri: str | None = Field(None, description="The LoRA adapter, when nothing was merged.")
    exports: dict[str, str] = Field(default_factory=dict, description="Exported format -> URI.")
    checks_passed: bool = Field(False, description="The export checks passed (or export is disabled).")
    champion_score: ChampionScore | None = Field(None, description="The champion rescored in this run.")
    approved_by: str | None = Field(
        None, description="Who approved the promotion in Airflow; the production pointer's `actor`."
    )


class PromotionDecision(OpenContract):
    """`promotion.json` and the registry's decision record."""

    promoted: bool = Field(description="Production now points at the candidate.")
    reason: str = Field(description="Why, in words.")
    version: int | None = Field(None, description="The candidate's registry version.")
    champion_version: int | None = Field(None, description="The production version compared with.")
    champion_metric: float | None = Field(None, description="The champion's primary metric.")
    candidate_metric: float | None = Field(None, description="The candidate's primary metric.")
    like_for_like: bool | None = Field(None, description="Both were scored on the same rows.")
    champion_rescored: bool | None = Field(None, description="The champion was scored in this run.")
    registry_uri: str | None = Field(None, description="The registry.")
    primary: str | None = Field(None, description="The metric compared.")
    decided_at: str | None = Field(None, description="When.")
    rerun: bool | None = Field(None, description="Replayed from an earlier attempt's record.")
    approval: ApprovalDecision | None = Field(
        None, description="A person's decision, with promotion.require_approval."
    )
