"""merge: the spec of a merged candidate, which `plan_merges` writes and `python -m tasks.merge` reads.

The merge step "trains" the candidate: it commits a `TrainResult` (with `merged_from` and `merge_method`)
at its `output`, the `train/` prefix of the candidate's job, so the evaluate step, selection, export and
promotion read it exactly like a training job's.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from tasks.config.merge import FULL_MERGES, LORA_MERGES, MergeMethod
from tasks.config.training import TrainingConfig
from tasks.contracts.base import Contract
from tasks.contracts.job import JobSpec


class MergePart(Contract):
    """One merged job: its row label and the weights its training committed."""

    label: str = Field(description="The job's `dataset|model|hparams` label.")
    job_id: str = Field(description="Store key of the job.")
    adapter_uri: str | None = Field(None, description="Its LoRA adapter (lora/qlora).")
    model_uri: str | None = Field(None, description="Its whole fine-tuned model (full).")

    @model_validator(mode="after")
    def _one_kind_of_weights(self) -> MergePart:
        if (self.adapter_uri is None) == (self.model_uri is None):
            raise ValueError(f"part {self.label}: give adapter_uri (LoRA) or model_uri (full), exactly one")
        return self


class MergeSpec(JobSpec):
    """What `python -m tasks.merge` reads. `dataset`, `model` and `eval_set` are the best part's."""

    step: Literal["merge"] = Field("merge", description="The step this spec is for.")
    training: TrainingConfig = Field(description="The parts' training type and method.")
    method: MergeMethod = Field(description="How the parts are merged (`merge.method`).")
    parts: list[MergePart] = Field(min_length=2, description="The merged jobs, best ranked first.")
    weights: list[float] = Field(description="One weight per part, in the same order.")
    density: float = Field(gt=0, le=1, description="ties and dare: the fraction of each task vector kept.")
    seed: int = Field(0, ge=0, description="Seeds DARE's random pruning, so a retry merges the same model.")

    @model_validator(mode="after")
    def _parts_fit_the_method(self) -> MergeSpec:
        problems = []
        if len(self.weights) != len(self.parts):
            problems.append(f"weights: one per part ({len(self.parts)}), got {len(self.weights)}")
        kinds = {part.adapter_uri is not None for part in self.parts}
        if len(kinds) > 1:
            problems.append("parts: LoRA adapters and full models cannot be merged together")
        elif self.adapters and self.method not in LORA_MERGES:
            problems.append(f"method: '{self.method}' does not merge LoRA adapters; use one of {LORA_MERGES}")
        elif not self.adapters and self.method not in FULL_MERGES:
            problems.append(f"method: '{self.method}' does not merge full models; use one of {FULL_MERGES}")
        if self.method == "slerp" and len(self.parts) != 2:
            problems.append(f"parts: slerp interpolates between two models, got {len(self.parts)}")
        if problems:
            raise ValueError("; ".join(problems))
        return self

    @property
    def adapters(self) -> bool:
        """The parts are LoRA adapters (else whole fine-tuned models)."""
        return self.parts[0].adapter_uri is not None
