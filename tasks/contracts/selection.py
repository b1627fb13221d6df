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
    kind: Literal["train", "reference", "merge"] = Field(
        description="A training job, a base-model reference or a merged candidate."
    )
    train: TrainResult | None = Field(description="The committed train result, if any.")
    metrics: dict[str, float | None] = Field(description="PyTorch metrics from the committed evaluation.")
    scored_on: str | None = Field(description="The dataset scored on.")
    metrics_jsonl: str | None = Field(description="The training curves.")
    quantized: QuantizedScores | None = Field(None, description="Scores of the export, with `rank_on`.")
    status: Literal["succeeded", "failed", "reference", "pruned"] = Field(
        description="How the job ended; pruned: stopped by successive halving, not failed."
    )
    error: str | None = Field(None, description="Why a failed job failed.")
    stopped: str | None = Field(
        None, description="Why training ended early (halving, early stopping, time limit), with the step."
    )
    round: int | None = Field(None, description="The search round of the row's last training.")
    device_hours: float | None = Field(None, description="devices x training hours of the job.")
    cost: float | None = Field(None, description="device_hours x the deployment's price per device-hour.")
    parts: list[str] | None = Field(None, description="A merged candidate: the labels of its parts.")
    merge_method: str | None = Field(None, description="A merged candidate: how its parts were merged.")
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
    currency: str | None = Field(None, description="Currency of `cost`, when a price is set.")
    device_hours: float | None = Field(None, description="Sum of every job's device-hours.")
    cost: float | None = Field(None, description="Sum of every job's cost.")
    search: str | None = Field(
        None, description="How the search ended: trials, rounds, and a budget that stopped it."
    )


class Selection(ExportPlan):
    """What `select_best` returns: the winner and its export and check specs."""

    winner: LeaderboardRow = Field(description="The winning row.")
