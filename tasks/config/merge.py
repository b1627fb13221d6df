"""Merged candidates: after selection, the top jobs that share a base model merged into one more model,
scored and ranked like a job (`tasks.merging` does the merging)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from tasks.config.base import StrictModel

# LoRA adapters: PEFT's add_weighted_adapter combination types; full fine-tunes: task-vector merges of
# (fine-tuned - base), or SLERP between two fine-tunes.
LORA_MERGES = ("linear", "ties", "dare_linear", "dare_ties", "svd")
FULL_MERGES = ("linear", "ties", "dare_linear", "dare_ties", "slerp")
MergeMethod = Literal["linear", "ties", "dare_linear", "dare_ties", "svd", "slerp"]


class MergeConfig(StrictModel):
    """Whether and how the experiment's best jobs are merged into a candidate of their own."""

    enabled: bool = Field(False, description="Merge the top jobs of each base model into one more candidate.")
    top_k: int = Field(2, ge=2, description="How many of the best jobs sharing a base model are merged.")
    method: MergeMethod = Field(
        "linear",
        description="linear, ties, dare_linear, dare_ties (LoRA and full), svd (LoRA only) or slerp (two "
        "full fine-tunes only).",
    )
    weights: list[float] | None = Field(
        None, description="Weight of each merged job, best first; equal weights when empty."
    )
    density: float = Field(
        0.5, gt=0, le=1, description="ties and dare: the fraction of each task vector's values kept."
    )
