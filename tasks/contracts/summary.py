"""report: `summary.json`, what a run produced and how it ended (read by the demo and upstream tools)."""

from __future__ import annotations

from pydantic import Field

from tasks.contracts.base import Contract
from tasks.contracts.promotion import PromotionDecision
from tasks.contracts.selection import Failure


class SummaryWinner(Contract):
    """The winner as the run summary names it."""

    label: str = Field(description="The winning row's label.")
    metrics: dict[str, float | None] = Field(description="Its PyTorch metrics.")


class RunSummary(Contract):
    """`summary.json` and the report task's XCom: where the run's outputs are and how it ended."""

    run_uri: str = Field(description="The run.")
    report_uri: str = Field(description="The HTML report.")
    winner: SummaryWinner | None = Field(description="The winner, or None when no job succeeded.")
    failed: list[Failure] = Field(description="The failed jobs with reasons.")
    exports: dict[str, str] = Field(description="Exported format -> URI.")
    merged_model_uri: str | None = Field(description="The merged model the export made.")
    promotion: PromotionDecision | None = Field(description="The promotion decision, if promote ran.")
