"""Full fine-tunes of one base model merged tensor by tensor: task vectors (fine-tuned - base) combined
with PEFT's merge utilities (`peft.utils.merge_utils`) and added back to the base, or SLERP between two
fine-tunes.

The parts are read one tensor at a time from their safetensors files, so memory holds the base model,
the merged result in its place and one tensor of each part, not k whole models.
"""

from __future__ import annotations

import json
from contextlib import ExitStack
from pathlib import Path
from typing import Any

from tasks.runtime.errors import StepError

# Above this |cosine| two tensors are (nearly) parallel: SLERP's sin(theta) divides by almost zero, and
# the arc is a straight line anyway, so they are interpolated linearly.
PARALLEL = 0.9995


def slerp(first: Any, second: Any, t: float) -> Any:
    """Spherical interpolation from `first` (t = 0) to `second` (t = 1) along the arc between the two
    flattened tensors; linear when they are (nearly) parallel or one is zero."""
    import torch

    a, b = first.double().flatten(), second.double().flatten()
    norms = a.norm() * b.norm()
    cosine = (a @ b / norms).clamp(-1.0, 1.0) if norms > 0 else torch.tensor(1.0, dtype=torch.float64)
    if cosine.abs() > PARALLEL:
        return torch.lerp(first.double(), second.double(), t).to(first.dtype)
    theta = torch.arccos(cosine)
    mixed = (
        torch.sin((1 - t) * theta) * first.double() + torch.sin(t * theta) * second.double()
    ) / torch.sin(theta)
    return mixed.to(first.dtype)


def combine(method: str, base: Any, tensors: list[Any], weights: list[float], density: float) -> Any:
    """One merged tensor from the base's and each part's."""
    import torch
    from peft.utils import merge_utils

    if method == "slerp":
        return slerp(tensors[0], tensors[1], weights[1] / sum(weights))
    deltas = [tensor - base for tensor in tensors]
    scale = torch.tensor(weights, dtype=base.dtype)
    if method == "linear":
        merged = merge_utils.task_arithmetic(deltas, scale)
    elif method == "ties":
        merged = merge_utils.ties(deltas, scale, density)
    elif method == "dare_linear":
        merged = merge_utils.dare_linear(deltas, scale, density)
    elif method == "dare_ties":
        merged = merge_utils.dare_ties(deltas, scale, density)
    else:
        raise StepError(f"merge.method '{method}' does not merge full fine-tunes")
    return base + merged


def tensor_files(directory: Path, label: str) -> dict[str, Path]:
    """Tensor name -> the safetensors file holding it, for a single-file or a sharded save."""
    index = directory / "model.safetensors.index.json"
    if index.exists():
        weight_map = json.loads(index.read_text(encoding="utf-8"))["weight_map"]
        return {name: directory / file for name, file in weight_map.items()}
    single = directory / "model.safetensors"
    if not single.exists():
        raise StepError(f"part {label}: {directory} holds no model.safetensors; only safetensors are merged")
    from safetensors import safe_open

    with safe_open(str(single), framework="pt") as handle:
        return dict.fromkeys(handle.keys(), single)


class _Part:
    """One part's tensors, each file opened once (memory-mapped) for the whole merge."""

    def __init__(self, directory: Path, label: str, stack: ExitStack) -> None:
        self.label, self.files, self.stack, self.handles = label, tensor_files(directory, label), stack, {}

    def tensor(self, name: str, shape: tuple[int, ...]) -> Any:
        from safetensors import safe_open

        if name not in self.files:
            raise StepError(f"part {self.label} has no tensor {name}: merged parts must fine-tune one base")
        file = self.files[name]
        if file not in self.handles:
            self.handles[file] = self.stack.enter_context(safe_open(str(file), framework="pt"))
        tensor = self.handles[file].get_tensor(name)
        if tuple(tensor.shape) != shape:
            raise StepError(f"part {self.label}: {name} is {tuple(tensor.shape)}, the base's {shape}")
        return tensor.float()


def merge_models(
    model: Any, parts: list[Path], labels: list[str], weights: list[float], method: str, density: float
) -> None:
    """Replace every parameter of `model` (the base, loaded) by the merge of the parts' tensors."""
    import torch

    with ExitStack() as stack, torch.no_grad():
        readers = [_Part(directory, label, stack) for directory, label in zip(parts, labels, strict=True)]
        # Tied weights are one parameter (named once), as they are one tensor in the saved files.
        for name, parameter in model.named_parameters():
            base = parameter.detach().float()
            tensors = [reader.tensor(name, tuple(base.shape)) for reader in readers]
            parameter.copy_(combine(method, base, tensors, weights, density).to(parameter.dtype))
