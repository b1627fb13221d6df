"""LoRA adapters merged with PEFT's add_weighted_adapter, checked against the merge computed by hand."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file
from transformers import AutoModelForCausalLM

from tasks.merging.lora import merge_adapters
from tasks.runtime.errors import StepError
from tests.tasks.merging.parts import delta, lora_weights, make_adapter, ties_by_hand

MODULES = ("model.layers.0.self_attn.q_proj", "model.layers.1.self_attn.v_proj")


@pytest.fixture(scope="module")
def adapters(tiny_model_dir, tmp_path_factory):
    root = tmp_path_factory.mktemp("adapters")
    first = make_adapter(tiny_model_dir, root / "first", seed=1, r=2, alpha=4)
    second = make_adapter(tiny_model_dir, root / "second", seed=2, r=2, alpha=8)
    wide = make_adapter(tiny_model_dir, root / "wide", seed=3, r=4, alpha=4)
    return root, {"first": first, "second": second, "wide": wide}


def _merge(base, root, names, weights, method, target, density=0.5):
    model = AutoModelForCausalLM.from_pretrained(base)
    merge_adapters(model, [root / n for n in names], list(names), weights, method, density, target)
    return load_file(target / "adapter_model.safetensors"), json.loads(
        (target / "adapter_config.json").read_text()
    )


def test_linear_merges_sqrt_weighted_a_and_b_as_peft_documents(tiny_model_dir, adapters, tmp_path):
    root, tensors = adapters
    merged, config = _merge(tiny_model_dir, root, ["first", "second"], [0.7, 0.3], "linear", tmp_path / "m")
    assert config["r"] == config["lora_alpha"] == 2, "the parts' scalings are folded in: merged scaling 1"
    a, b = lora_weights([0.7, 0.3], [4 / 2, 8 / 2])
    for module in MODULES:
        key = f"base_model.model.{module}"
        first, second = tensors["first"], tensors["second"]
        merged_a = a * first[f"{key}.lora_A.weight"] + b * second[f"{key}.lora_A.weight"]
        merged_b = a * first[f"{key}.lora_B.weight"] + b * second[f"{key}.lora_B.weight"]
        torch.testing.assert_close(delta(merged, module), merged_b @ merged_a)
        # Not the exact weighted sum of the parts' deltas: linear mixes A of one part with B of the other.
        exact = 0.7 * delta(first, module, 2.0) + 0.3 * delta(second, module, 4.0)
        assert not torch.allclose(delta(merged, module), exact)


def test_ties_trims_elects_signs_and_averages_a_and_b_separately(tiny_model_dir, adapters, tmp_path):
    root, tensors = adapters
    merged, _ = _merge(tiny_model_dir, root, ["first", "second"], [1.0, 1.0], "ties", tmp_path / "m", 0.5)
    scaled = lora_weights([1.0, 1.0], [2.0, 4.0])
    for module in MODULES:
        key = f"base_model.model.{module}"
        merged_a, merged_b = (
            ties_by_hand([tensors[n][f"{key}.lora_{m}.weight"] for n in ("first", "second")], scaled, 0.5)
            for m in ("A", "B")
        )
        torch.testing.assert_close(delta(merged, module), merged_b @ merged_a)


def test_svd_merges_the_exact_weighted_deltas_of_adapters_of_different_ranks(
    tiny_model_dir, adapters, tmp_path
):
    root, tensors = adapters
    merged, config = _merge(tiny_model_dir, root, ["first", "wide"], [0.5, 0.5], "svd", tmp_path / "m")
    assert config["r"] == 4, "the largest part rank"
    for module in MODULES:
        exact = 0.5 * delta(tensors["first"], module, 2.0) + 0.5 * delta(tensors["wide"], module, 1.0)
        # Rank 2 + rank 4 summed has rank <= 6, kept at rank 4: close in norm, not equal.
        error = (delta(merged, module) - exact).norm() / exact.norm()
        assert error < 0.5
    merged_same, _ = _merge(tiny_model_dir, root, ["first", "second"], [0.5, 0.5], "svd", tmp_path / "same")
    for module in MODULES:
        exact = 0.5 * delta(tensors["first"], module, 2.0) + 0.5 * delta(tensors["second"], module, 4.0)
        # Two rank-2 deltas sum to rank <= 4 > 2 kept, so again an approximation; the best rank-2 one.
        u, s, vh = torch.linalg.svd(exact)
        best = u[:, :2] @ torch.diag(s[:2]) @ vh[:2]
        torch.testing.assert_close(delta(merged_same, module), best, atol=1e-5, rtol=1e-4)


def test_adapters_of_different_ranks_are_refused_for_linear_saying_what_to_change(
    tiny_model_dir, adapters, tmp_path
):
    root, _ = adapters
    with pytest.raises(StepError, match=r"first: r=2, wide: r=4: use merge.method svd"):
        _merge(tiny_model_dir, root, ["first", "wide"], [0.5, 0.5], "linear", tmp_path / "m")
