"""Every PEFT method x training type that runs on CPU, on the tiny random model: the loss goes down, only
the method's own parameters move, the saved weights reload (as evaluation and export load them) to the
same outputs, and mergeable adapters merge into a model whose logits equal the adapter model's."""

from __future__ import annotations

import json

import pytest
import torch

from tasks.config.catalog import ModelSource
from tasks.config.hparams import ResolvedHParams
from tasks.runtime.errors import StepError
from tasks.scoring.evaluation import answer_loss
from tasks.scoring.generation import generate
from tasks.storage import store
from tasks.training.base_models import is_prompt_adapter, load_model
from tasks.training.peft_methods import freeze_all_but_last, rank_budget, save_weights
from tasks.training.trainer import train
from tests.fixtures.gpu import needs_gpu
from tests.tasks.training.test_train_types import (
    HPARAMS,
    conversations,
    make_job,
    preference_pairs,
    train_and_compare,
    trainer_for,
    write_dataset,
)

# (method, hparams): a learning rate each method learns with in 6 steps on the random model.
CASES = {
    "dora": ("lora", {"lora_variant": "dora", "learning_rate": 3e-2}),
    "rslora": ("lora", {"lora_variant": "rslora", "learning_rate": 1e-2}),  # alpha / sqrt(r): twice the step
    "pissa": ("lora", {"lora_init": "pissa", "learning_rate": 3e-2}),
    "olora": ("lora", {"lora_init": "olora", "learning_rate": 3e-2}),
    "adalora": (
        "adalora",
        {"learning_rate": 1e-1, "adalora_init_r": 8, "adalora_target_r": 2, "adalora_tfinal": 1},
    ),
    "ia3": ("ia3", {"learning_rate": 2e-1}),
    "prompt_tuning": ("prompt_tuning", {"learning_rate": 3e-1, "num_virtual_tokens": 8}),
    "prefix_tuning": ("prefix_tuning", {"learning_rate": 2e-1, "num_virtual_tokens": 8}),
    "p_tuning": ("p_tuning", {"learning_rate": 5e-2, "num_virtual_tokens": 8}),
    "freeze": ("freeze", {"learning_rate": 5e-3, "freeze_trainable_layers": 1}),
}
MERGEABLE = {"dora", "rslora", "pissa", "olora", "adalora", "ia3"}
PROMPT = {"prompt_tuning", "prefix_tuning", "p_tuning"}
STEPS = {
    "max_steps": 4,
    "lora_r": 4,
    "lora_alpha": 8,
    "batch_size": 2,
    "micro_batch_size": 2,
    "max_seq_length": 64,
}


def assert_loss_goes_down(losses: list[float]) -> None:
    """Four steps on the same rows (no dropout, no other data): every later step's loss below the first
    one's, and the last by more than rounding."""
    assert len(losses) == 4, losses
    assert all(later < losses[0] for later in losses[1:]), losses
    assert losses[-1] < 0.998 * losses[0], losses


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> dict:
    base = tmp_path_factory.mktemp("peft-data")
    texts = [{"text": m[2]["content"] + " " + m[4]["content"]} for m in conversations(2)]
    return {
        # One batch of rows, seen at every step: a loss that does not go down is not the data's doing.
        "sft": ("chat", write_dataset(base / "chat", [{"messages": m} for m in conversations(2)])),
        "dpo": ("preference", write_dataset(base / "preference", preference_pairs(2))),
        "pretrain": ("text", write_dataset(base / "text", texts)),
    }


def logits(model, ids: torch.Tensor) -> torch.Tensor:
    model.eval()
    with torch.no_grad():
        return model(input_ids=ids, attention_mask=torch.ones_like(ids)).logits


def intended(case: str, name: str) -> bool:
    """Whether a parameter of the trained model belongs to what `case` trains."""
    if case == "freeze":
        return ".layers.1." in name  # the last of the tiny model's 2 layers
    if case in PROMPT:
        return "prompt_encoder" in name
    if case == "ia3":
        return "ia3_l" in name
    return "lora_" in name


PAIRS = [(t, c) for t in ("sft", "dpo") for c in CASES] + [("pretrain", "freeze")]


@pytest.mark.parametrize(("type_", "case"), PAIRS, ids=[f"{t}-{c}" for t, c in PAIRS])
def test_method_learns_moves_only_its_weights_and_saves_what_reloads(
    tiny_model_dir, data, tmp_path, type_, case
):
    method, hparams = CASES[case]
    kind, directory = data[type_]
    extra = {"dpo_beta": 0.5} if type_ == "dpo" else {}
    job = make_job(tmp_path, tiny_model_dir, directory, kind, type_, method, **STEPS, **hparams, **extra)
    trainer, tokenizer = trainer_for(job, tmp_path)
    base = {n: p.detach().clone() for n, p in trainer.model.named_parameters()}
    run = train_and_compare(trainer)

    assert_loss_goes_down(run["losses"])
    assert run["moved"], "nothing trained"
    assert all(intended(case, name) for name in run["trainable"] | run["moved"]), sorted(run["trainable"])
    if case == "pissa" or case == "olora":
        # The base was decomposed: its residual stays fixed while the adapter trains.
        assert not any(intended(case, n) for n in base if n not in run["moved"] and "base_layer" in n)

    ids = torch.tensor([tokenizer("Who are you? I am Tuna.")["input_ids"]])
    trained = logits(trainer.model, ids)
    saved = tmp_path / "weights"
    save_weights(trainer, trainer.tunerflow_prepared, saved, main_process=True)
    entry = job.model
    if case == "freeze":
        reloaded = load_model(
            entry.model_copy(update={"source": ModelSource(path=str(saved))}), job.store_root
        )
        assert torch.allclose(logits(reloaded, ids), trained, atol=1e-5)
        return
    assert (saved / "adapter_model.safetensors").exists()
    assert is_prompt_adapter(saved) == (case in PROMPT)
    # As evaluation, compare and export load it: the base as shipped (not PiSSA's residual) plus the
    # adapter, merged into the weights unless it is a prompt-learning one.
    reloaded = load_model(entry, job.store_root, adapter_dir=str(saved))
    if case in MERGEABLE:
        assert type(reloaded).__name__ == "LlamaForCausalLM"  # merged: a plain model
    else:
        assert type(reloaded).__name__.startswith("PeftModel")
    assert torch.allclose(logits(reloaded, ids), trained, atol=1e-4), (
        (logits(reloaded, ids) - trained).abs().max()
    )
    if case in PROMPT:
        # Scored as the evaluate step scores: the answer loss and left-padded greedy generation.
        rows = [{"messages": m} for m in conversations(2)]
        assert 0 < answer_loss(reloaded, tokenizer, rows, batch_size=2) < 20
        answers, stats = generate(
            reloaded, tokenizer, ["<|im_start|>user\nWho are you?<|im_end|>\n"] * 2, 3, 2
        )
        assert len(answers) == 2 and stats["generated_tokens"] > 0


def test_adalora_rank_budget_shrinks_every_optimizer_step_past_tinit(tiny_model_dir, data, tmp_path):
    method, hparams = CASES["adalora"]
    kind, directory = data["sft"]
    job = make_job(tmp_path, tiny_model_dir, directory, kind, "sft", method, **STEPS, **hparams)
    trainer, _ = trainer_for(job, tmp_path)
    _, start = rank_budget(trainer.model)
    trainer.train()
    config = trainer.model.peft_config["default"]
    assert config.total_step == 4  # the run's steps, set when training began
    matrices = len(config.rank_pattern)
    assert start == 8 * matrices  # init_r singular values per adapted matrix
    # The budget ends at target_r on average: the rank pattern keeps that many, the rest masked to 0.
    kept = sum(sum(mask) for mask in config.rank_pattern.values())
    assert kept == 2 * matrices
    assert rank_budget(trainer.model) == (kept, start)


def test_adalora_schedule_that_leaves_no_steps_is_refused(tiny_model_dir, data, tmp_path):
    method, hparams = CASES["adalora"]
    kind, directory = data["sft"]
    job = make_job(
        tmp_path, tiny_model_dir, directory, kind, "sft", method, **{**STEPS, **hparams, "adalora_tinit": 5}
    )
    with pytest.raises(StepError, match=r"adalora_tinit \(5\) \+ adalora_tfinal \(1\) leave none"):
        trainer_for(job, tmp_path)


def test_freeze_keeps_requires_grad_only_on_the_last_layers(tiny_model_dir):
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    trainable = freeze_all_but_last(model, 1)
    assert trainable and all(name.startswith("model.layers.1.") for name in trainable)
    with pytest.raises(StepError, match="freeze_trainable_layers 3 exceeds"):
        freeze_all_but_last(model, 3)


def test_a_saved_pissa_adapter_is_a_plain_lora_of_twice_the_rank(tiny_model_dir, data, tmp_path):
    method, hparams = CASES["pissa"]
    kind, directory = data["sft"]
    job = make_job(
        tmp_path, tiny_model_dir, directory, kind, "sft", method, **{**STEPS, **hparams, "max_steps": 2}
    )
    trainer, _ = trainer_for(job, tmp_path)
    trainer.train()
    save_weights(trainer, trainer.tunerflow_prepared, tmp_path / "a", main_process=True)
    config = json.loads((tmp_path / "a" / "adapter_config.json").read_text())
    assert config["r"] == 2 * STEPS["lora_r"] and config["init_lora_weights"] is True


@pytest.mark.parametrize(
    "variant", [pytest.param(v, marks=needs_gpu("bitsandbytes")) for v in ("dora", "rslora")]
)
def test_qlora_trains_the_lora_variants_over_a_4bit_base(tiny_model_dir, data, tmp_path, variant):
    kind, directory = data["sft"]
    job = make_job(
        tmp_path,
        tiny_model_dir,
        directory,
        kind,
        "sft",
        "qlora",
        **STEPS,
        learning_rate=1e-2,
        lora_variant=variant,
    )
    trainer, _ = trainer_for(job, tmp_path)
    run = train_and_compare(trainer)
    assert_loss_goes_down(run["losses"])
    assert run["moved"] and all("lora_" in name for name in run["moved"])
    if variant == "dora":
        assert any("lora_magnitude_vector" in name for name in run["trainable"])


def test_resolved_hparams_of_every_case_validate():
    for _, hparams in CASES.values():
        assert ResolvedHParams.model_validate({**HPARAMS, **hparams}).name == "t"


@pytest.mark.parametrize("case", ["pissa", "prompt_tuning", "freeze"])
def test_the_train_step_commits_each_method_s_output(tiny_model_dir, data, tmp_path, case):
    """Through `tasks.training.trainer.train`, as the step runs: where the weights go, and merge_adapter
    merges a PiSSA adapter (saved as a plain LoRA) and declines virtual tokens and whole models."""
    method, hparams = CASES[case]
    kind, directory = data["sft"]
    settings = {**STEPS, **hparams, "max_steps": 2, "merge_adapter": True}
    job = make_job(tmp_path, tiny_model_dir, directory, kind, "sft", method, **settings)
    result = train(job)
    out = store.local_path(job.output)
    assert result.method == method and result.steps == 2
    if case == "freeze":
        assert result.model_uri and result.adapter_uri is None and result.merged_uri is None
        assert (out / "model" / "model.safetensors").exists()
        return
    assert result.adapter_uri and (out / "adapter" / "adapter_model.safetensors").exists()
    assert not (out / "adapter" / "ref").exists()
    assert (result.merged_uri is not None) == (case == "pissa")
