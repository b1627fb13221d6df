"""Merged candidates: after selection, the top jobs that share a base model merged into one more model,
scored and ranked like a job (`tasks.merging` does the merging)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from tasks.config.base import StrictModel

# LoRA adapters: PEFT's add_weighted_adapter combination types; full fine-tunes: task-vector merges of
# (fine-tuned - base), or SLERP between two fine-tunes.
LORA_MERGES = ("linear", "ties", "dare_linear", "dare_ties", "svd")
FULL_MERGES = ("linear", "ties", "dare_linear", "dare_ties", "slerp")
MergeMethod = Literal["linear", "ties", "dare_linear", "dare_ties", "svd", "slerp"]
# The methods that drop part of each task vector, so the only ones `density` means anything to.
PRUNING_MERGES = ("ties", "dare_linear", "dare_ties")
# TIES and DARE-TIES already average the values whose sign agrees, so each part's weight is 1 unless
# given; the other methods add the weighted parts, so equal weights sum to 1 (an average).
AVERAGING_MERGES = ("ties", "dare_ties")
DEFAULT_DENSITY = 0.5


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
        None,
        description="Weight of each merged job, best first, one per top_k. When empty: 1/k each for "
        "linear, dare_linear and svd (an average), 1 each for ties and dare_ties (which average the "
        "values whose sign agrees), 0.5 each for slerp (the midpoint; t = second / (first + second)).",
    )
    density: float = Field(
        DEFAULT_DENSITY,
        gt=0,
        le=1,
        description="ties and dare: the fraction of each task vector's values kept.",
    )
    seed: int = Field(
        0, ge=0, description="Seed of DARE's random pruning, so a retried merge is the same model."
    )

    @model_validator(mode="after")
    def _settings_fit_the_method(self) -> MergeConfig:
        problems = []
        if self.weights and len(self.weights) != self.top_k:
            problems.append(
                f"merge.weights: give one weight per merged job (top_k = {self.top_k}), got "
                f"{len(self.weights)}; or leave weights empty for equal weights"
            )
        if self.method == "slerp":
            if self.top_k != 2:
                problems.append(
                    f"merge.top_k: slerp interpolates between two models; set top_k: 2 (got {self.top_k}) "
                    "or choose another merge.method"
                )
            if self.weights and (min(self.weights) < 0 or sum(self.weights) <= 0):
                problems.append("merge.weights: slerp's weights must be >= 0 and not all 0")
        if self.method not in PRUNING_MERGES and self.density != DEFAULT_DENSITY:
            problems.append(
                f"merge.density: only {', '.join(PRUNING_MERGES)} prune the task vectors; method "
                f"'{self.method}' ignores density: remove it or choose one of those methods"
            )
        if problems:
            raise ValueError("; ".join(problems))
        return self

    def part_weights(self, parts: int) -> list[float]:
        """The weight of each of `parts` merged jobs, best first (fewer than top_k when a base model had
        fewer successful jobs: the first weights given)."""
        if self.weights:
            return list(self.weights[:parts])
        if self.method == "slerp":
            return [0.5] * parts
        return [1.0 if self.method in AVERAGING_MERGES else 1.0 / parts] * parts


def method_problem(merge: MergeConfig, training_method: str) -> str | None:
    """Why `merge.method` cannot merge what `training.method` trains, if it cannot (None when it can):
    SVD re-factorises LoRA adapters, SLERP interpolates two whole models."""
    adapters = training_method in ("lora", "qlora")
    allowed = LORA_MERGES if adapters else FULL_MERGES
    if merge.method in allowed:
        return None
    weights = "LoRA adapters" if adapters else "full fine-tunes"
    return (
        f"merge.method '{merge.method}' cannot merge {weights} (training.method '{training_method}'); "
        f"choose one of {', '.join(allowed)}"
    )
