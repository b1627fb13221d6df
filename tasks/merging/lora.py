"""LoRA adapters of one base model merged into one adapter with PEFT's `add_weighted_adapter`.

PEFT folds each part's scaling (alpha / r) into its weight and gives the merged adapter alpha = r
(scaling 1). linear, ties, dare_linear and dare_ties combine the A and B matrices separately (each
with sqrt(weight x scaling)), so they need parts of one rank and the result is an approximation of the
weighted sum of the parts' B @ A; svd merges those products exactly and factorises the sum again at
the largest part rank, so it takes parts of any rank.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tasks.config.merge import PRUNING_MERGES
from tasks.runtime.errors import StepError
from tasks.training.base_models import require_safetensors

# PEFT saves the adapter named "default" at the top of the directory (any other name in a subdirectory),
# which is where the evaluate step and the export look for an adapter.
MERGED = "default"
EQUAL_RANK_MERGES = ("linear", "ties", "dare_linear", "dare_ties")


def _rank(config: Any) -> int:
    return max(config.r, *config.rank_pattern.values()) if config.rank_pattern else config.r


def mergeable_problem(configs: list[Any], labels: list[str], method: str) -> str | None:
    """Why PEFT cannot merge adapters with these `LoraConfig`s by `method`, with what to change."""
    ranks = {label: _rank(config) for label, config in zip(labels, configs, strict=True)}
    if method in EQUAL_RANK_MERGES and len(set(ranks.values())) > 1:
        shown = ", ".join(f"{label}: r={rank}" for label, rank in ranks.items())
        return (
            f"merge.method '{method}' needs LoRA adapters of one rank, these have {shown}: use merge.method "
            "svd (any ranks), or give the merged hyperparameter groups one lora_r"
        )
    if len({isinstance(config.target_modules, str) for config in configs}) > 1:
        return (
            "PEFT cannot merge adapters whose lora_target_modules mix a regular expression and a list of "
            f"module names ({', '.join(labels)}): give the merged hyperparameter groups the same kind"
        )
    return None


def merge_adapters(
    model: Any,
    adapters: list[Path],
    labels: list[str],
    weights: list[float],
    method: str,
    density: float,
    target: Path,
) -> None:
    """Load every adapter onto `model` (the base), merge them into one adapter and save it (safetensors)
    in `target`."""
    from peft import PeftModel

    for directory in adapters:
        require_safetensors(directory)
    names = [f"part{index}" for index in range(len(adapters))]
    merged = PeftModel.from_pretrained(model, str(adapters[0]), adapter_name=names[0])
    for name, directory in zip(names[1:], adapters[1:], strict=True):
        merged.load_adapter(str(directory), adapter_name=name)
    problem = mergeable_problem([merged.peft_config[name] for name in names], labels, method)
    if problem:
        raise StepError(problem)
    try:
        merged.add_weighted_adapter(
            names,
            weights,
            adapter_name=MERGED,
            combination_type=method,
            density=density if method in PRUNING_MERGES else None,
        )
    except ValueError as error:
        raise StepError(
            f"PEFT cannot merge {', '.join(labels)} with merge.method '{method}': {error}"
        ) from None
    merged.save_pretrained(str(target), selected_adapters=[MERGED], safe_serialization=True)
