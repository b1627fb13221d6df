"""Whether and how the winner is registered and made the production model."""

from __future__ import annotations

from pydantic import Field

from tasks.config.base import SlugStr, StrictModel


class PromotionConfig(StrictModel):
    enabled: bool = Field(True, description="Register the winner and move the production pointer.")
    registry_name: SlugStr | None = Field(
        None, description="Name of the model in the registry; defaults to the experiment name."
    )
    margin: float = Field(
        0.0, ge=0, description="The candidate must beat the champion's primary metric by more than this."
    )
    rescore_champion: bool = Field(
        True,
        description="Score the current production model again on this run's eval set, with the same code "
        "and rows as the candidate, so that promotion compares like for like (champion/challenger).",
    )
    require_approval: bool = Field(
        False,
        description="Before the production pointer moves, a person approves or rejects the candidate in "
        "Airflow (a human-in-the-loop task showing the leaderboard, the champion comparison and answers).",
    )
    approval_timeout_hours: float = Field(
        24.0, gt=0, description="With require_approval: hours to wait for a decision before rejecting."
    )
