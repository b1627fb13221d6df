"""select_best: the leaderboard (a row per planned job, its failures) and the selection XCom carries."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from tasks.contracts.base import Contract
from tasks.contracts.evaluate import QuantizedScores
from tasks.contracts.planning import ExportPlan
from tasks.contracts.train import TrainResult


class LeaderboardRow(Contract):
    """One planned job as it ended."""

    job_id: str = Field(description="Store key of the job.")
    label: str = Field(description="Row label.")
    kind: Literal["train", "reference"] = Field(description="A training job or a base-model reference.")
    train: TrainResult | None = Field(description="The committed train result, if any.")
    metrics: dict[str, float | None] = Field(description="PyTorch metrics from the committed evaluation.")
    scored_on: str | None = Field(description="The dataset scored on.")
    metrics_jsonl: str | None = Field(description="The training curves.")
    quantized: QuantizedScores | None = Field(None, description="Scores of the export, with `rank_on`.")
    status: Literal["succeeded", "failed", "reference"] = Field(description="How the job ended.")
    error: str | None = Field(None, description="Why a failed job failed.")
    rank: int | None = Field(None, description="1 for the winner; succeeded jobs only.")


class Failure(Contract):
    """A failed job and its reason."""

    label: str = Field(description="Row label.")
    error: str = Field(description="The failed step and its message.")


class Leaderboard(Contract):
    """`leaderboard.json`: ranked successes first, then references and failures."""

    primary: str = Field(description="The metric ranked on.")
    rank_on: str = Field("pytorch", description="pytorch, or the export format ranked on.")
    rows: list[LeaderboardRow] = Field(default_factory=list, description="Every planned job.")
    winner: LeaderboardRow | None = Field(None, description="The first ranked row.")
    failed: list[Failure] = Field(default_factory=list, description="The failed jobs with reasons.")


class Selection(ExportPlan):
    """What `select_best` returns: the winner and its export and check specs."""

    winner: LeaderboardRow = Field(description="The winning row.")
