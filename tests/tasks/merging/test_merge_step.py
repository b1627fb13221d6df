"""The merge step end to end on a file store: two committed trainings in, one committed TrainResult out
that an evaluate spec reads like a training's."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file

from tasks.contracts.evaluate import EvaluateSpec
from tasks.contracts.merge import MergePart, MergeSpec
from tasks.contracts.train import TrainResult
from tasks.merging.merge_step import merge
from tasks.runtime.step import execute
from tasks.scoring.evaluation import trained_weights
from tasks.storage import store
from tests.tasks.merging.parts import make_adapter, make_fine_tune

DATASET = {"name": "tuna", "uri": "file:///prepared/tuna", "kind": "chat"}


def _committed_training(store_root: str, job_id: str, make, base, seed: int) -> str:
    """A job's train output committed in the store as the train step commits it; returns the weights' uri."""
    output = store.join(store_root, "jobs", job_id, "train")
    adapter = make is make_adapter
    weights = store.local_dir(output) / ("adapter" if adapter else "model")
    make(base, weights, seed=seed)
    uri = store.uri_of(weights)
    store.commit(output, {"adapter_uri": uri if adapter else None, "model_uri": None if adapter else uri})
    return uri


def _spec(store_root, tiny_model_dir, parts, method, output="merged", training=None, **fields) -> MergeSpec:
    return MergeSpec(
        store_root=store_root,
        job_id="tuna--tiny--merge-" + method,
        label=f"tuna|tiny|merge-{method}",
        output=store.join(store_root, "jobs", output, "train"),
        dataset=DATASET,
        model={"name": "tiny", "source": {"path": str(tiny_model_dir)}, "kind": "uri"},
        training=training or {"type": "sft", "method": "lora"},
        method=method,
        parts=parts,
        weights=[0.5] * len(parts),
        density=0.5,
        **fields,
    )


@pytest.fixture
def adapter_parts(store_root, tiny_model_dir):
    return [
        MergePart(
            label=f"tuna|tiny|{name}",
            job_id=name,
            adapter_uri=_committed_training(store_root, name, make_adapter, tiny_model_dir, seed),
        )
        for name, seed in (("a", 1), ("b", 2))
    ]


def test_the_step_commits_a_merged_adapter_an_evaluate_spec_scores_like_a_training(
    store_root, tiny_model_dir, adapter_parts
):
    from tasks.training.base_models import load_model

    spec = _spec(store_root, tiny_model_dir, adapter_parts, "ties")
    committed = execute("merge", merge, spec, TrainResult)
    result = TrainResult.load(committed, "the merge")
    assert result.merged_from == ["tuna|tiny|a", "tuna|tiny|b"] and result.merge_method == "ties"
    assert result.label == spec.label and result.method == "lora" and result.model_uri is None
    assert result.adapter_uri == store.join(spec.output, "adapter")
    assert store.committed_result(spec.output) == committed
    evaluate = EvaluateSpec(
        store_root=store_root,
        job_id=spec.job_id,
        label=spec.label,
        output=store.join(store_root, "jobs", "merged", "evaluate"),
        dataset=DATASET,
        model=spec.model,
        scoring={},
        train_output=spec.output,
    )
    weights = trained_weights(evaluate)
    assert weights.adapter_uri == result.adapter_uri and weights.model_uri is None
    adapter = store.fetch(weights.adapter_uri)
    assert (adapter / "tokenizer_config.json").exists()
    merged = load_model(spec.model, store_root, adapter_dir=str(adapter))
    base = load_model(spec.model, store_root)
    name = "model.layers.0.self_attn.q_proj.weight"
    changed = dict(merged.named_parameters())[name] - dict(base.named_parameters())[name]
    saved = load_file(adapter / "adapter_model.safetensors")
    key = "base_model.model.model.layers.0.self_attn.q_proj"
    torch.testing.assert_close(changed, saved[f"{key}.lora_B.weight"] @ saved[f"{key}.lora_A.weight"])


def test_dare_merges_the_same_adapter_for_the_same_seed(store_root, tiny_model_dir, adapter_parts):
    tensors = []
    for output, seed in (("once", 3), ("again", 3), ("other", 4)):
        spec = _spec(store_root, tiny_model_dir, adapter_parts, "dare_linear", output=output, seed=seed)
        execute("merge", merge, spec, TrainResult)
        tensors.append(load_file(store.local_dir(spec.output) / "adapter" / "adapter_model.safetensors"))
    once, again, other = tensors
    assert all(torch.equal(once[k], again[k]) for k in once)
    assert not all(torch.equal(once[k], other[k]) for k in once)


def test_the_step_merges_full_fine_tunes_into_a_model_directory(store_root, tiny_model_dir):
    from transformers import AutoModelForCausalLM

    parts = [
        MergePart(
            label=f"tuna|tiny|{name}",
            job_id=name,
            model_uri=_committed_training(store_root, name, make_fine_tune, tiny_model_dir, seed),
        )
        for name, seed in (("a", 1), ("b", 2))
    ]
    spec = _spec(store_root, tiny_model_dir, parts, "slerp", training={"type": "sft", "method": "full"})
    result = TrainResult.load(execute("merge", merge, spec, TrainResult), "the merge")
    assert result.model_uri == store.join(spec.output, "model") and result.adapter_uri is None
    directory = store.fetch(result.model_uri)
    assert json.loads((directory / "config.json").read_text())["hidden_size"] == 32
    model = AutoModelForCausalLM.from_pretrained(directory)
    assert model.lm_head.weight.data_ptr() == model.model.embed_tokens.weight.data_ptr(), "still tied"


def test_a_spec_mixing_adapters_and_full_models_is_refused_naming_the_field(store_root, tiny_model_dir):
    parts = [
        MergePart(label="tuna|tiny|a", job_id="a", adapter_uri="file:///a"),
        MergePart(label="tuna|tiny|b", job_id="b", model_uri="file:///b"),
    ]
    with pytest.raises(ValueError, match="parts: LoRA adapters and full models cannot be merged together"):
        _spec(store_root, tiny_model_dir, parts, "linear")
    with pytest.raises(ValueError, match="method: 'slerp' does not merge LoRA adapters"):
        _spec(store_root, tiny_model_dir, parts[:1] * 2, "slerp")
