"""Merge parts for the tests: tiny LoRA adapters and tiny "fine-tunes" with known, random tensors, and the
merges computed by hand that the library's results are checked against."""

from __future__ import annotations

import math
from pathlib import Path

import torch


def make_adapter(base: Path, target: Path, seed: int, r: int = 2, alpha: int = 4) -> dict[str, torch.Tensor]:
    """A LoRA adapter on q_proj and v_proj with random A and B (B is not zero, so it changes the model);
    returns its saved tensors."""
    from peft import LoraConfig, get_peft_model
    from safetensors.torch import load_file
    from transformers import AutoModelForCausalLM

    torch.manual_seed(seed)
    config = LoraConfig(
        r=r,
        lora_alpha=alpha,
        target_modules=["q_proj", "v_proj"],
        init_lora_weights=False,
        task_type="CAUSAL_LM",
    )
    get_peft_model(AutoModelForCausalLM.from_pretrained(base), config).save_pretrained(target)
    return load_file(target / "adapter_model.safetensors")


def make_fine_tune(base: Path, target: Path, seed: int) -> dict[str, torch.Tensor]:
    """The base model with noise added to every weight, saved as a full fine-tune; returns its parameters."""
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(base)
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.add_(0.05 * torch.randn(parameter.shape, generator=generator))
    model.save_pretrained(target, safe_serialization=True)
    return {name: p.detach().clone() for name, p in model.named_parameters()}


def delta(tensors: dict[str, torch.Tensor], module: str, scaling: float = 1.0) -> torch.Tensor:
    """B @ A x scaling of one module of a saved adapter: what it adds to the base weight."""
    key = f"base_model.model.{module}"
    return tensors[f"{key}.lora_B.weight"] @ tensors[f"{key}.lora_A.weight"] * scaling


def ties_by_hand(tensors: list[torch.Tensor], weights: list[float], density: float) -> torch.Tensor:
    """TIES: keep each tensor's `density` largest magnitudes, elect the sign of each position from the sum
    of the kept values, and average the weighted kept values that have that sign."""
    kept = []
    for tensor in tensors:
        keep = int(density * tensor.numel())
        threshold = tensor.abs().flatten().sort(descending=True).values[keep - 1]
        kept.append(torch.where(tensor.abs() >= threshold, tensor, torch.zeros_like(tensor)))
    elected = torch.where(sum(kept) >= 0, 1.0, -1.0)
    total, count = torch.zeros_like(tensors[0]), torch.zeros_like(tensors[0])
    for tensor, weight in zip(kept, weights, strict=True):
        agrees = (tensor.sign() == elected).float()
        total += weight * tensor * agrees
        count += agrees
    return total / count.clamp(min=1)


def lora_weights(weights: list[float], scalings: list[float]) -> list[float]:
    """What PEFT multiplies each adapter's A and B by: sqrt(weight x alpha / r)."""
    return [math.sqrt(w * s) for w, s in zip(weights, scalings, strict=True)]
