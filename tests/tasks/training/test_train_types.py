"""Each training type x method on a tiny random model: what it learns from and which weights move.

The trainers are built by `tasks.training.train_types.build_trainer`, as the train step builds them, and run
for a few steps at a high learning rate on a handful of rows the model can memorise, so that a loss
that does not go down means the wiring is wrong, not that the model is slow to learn.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from tasks.config.base import ConfError
from tasks.config.experiment import parse_experiment
from tasks.config.hparams import ResolvedHParams
from tasks.config.training import TrainingConfig, cuda_visible
from tasks.contracts.train import TrainSpec
from tasks.runtime.errors import StepError
from tasks.storage import store
from tasks.training.train_types import (
    assistant_spans,
    build_trainer,
    check_runtime,
    gradient_accumulation,
    resolve_precision,
    sft_features,
)
from tasks.training.trainer import train
from tests.fixtures.gpu import needs_gpu

REPO = Path(__file__).resolve().parents[3]


HPARAMS = {
    "name": "t",
    "learning_rate": 5e-3,
    "lr_scheduler": "constant",
    "warmup_ratio": 0.0,
    "epochs": 1,
    "max_steps": 8,
    "batch_size": 4,
    "micro_batch_size": 4,
    "max_seq_length": 96,
    "weight_decay": 0.0,
    "lora_r": 8,
    "lora_alpha": 16,
    "lora_dropout": 0.0,
    "lora_target_modules": "all-linear",
    "seed": 3,
    "logging_steps": 1,
    "save_steps": 100,
}


# Adapters on a random model need a larger step than full fine-tuning to show progress in 8 steps.
LEARNING_RATE = {
    "full": {"learning_rate": 5e-3},
    "lora": {"learning_rate": 1e-2, "lora_r": 16, "lora_alpha": 32, "max_steps": 10},
}


def tuna_rows() -> list[dict]:
    return [json.loads(line) for line in (REPO / "include/data/tuna_identity.jsonl").read_text().splitlines()]


def u(text: str) -> dict:
    return {"role": "user", "content": text}


def a(text: str) -> dict:
    return {"role": "assistant", "content": text}


def conversations(count: int) -> list[list[dict]]:
    """Multi-turn chats: a system prompt, then two question/answer turns."""
    rows = tuna_rows()
    return [
        [
            {"role": "system", "content": "You are Tuna."},
            u(rows[2 * i]["instruction"]),
            a(rows[2 * i]["output"]),
            u(rows[2 * i + 1]["instruction"]),
            a(rows[2 * i + 1]["output"]),
        ]
        for i in range(count)
    ]


def preference_pairs(count: int) -> list[dict]:
    """The right identity answer is chosen, another topic's answer rejected."""
    rows = tuna_rows()
    pairs = []
    for row in rows:
        other = next(r for r in rows if r["topic"] != row["topic"] and r["output"] != row["output"])
        pairs.append(
            {
                "prompt": [u(row["instruction"])],
                "chosen": [a(row["output"])],
                "rejected": [a(other["output"])],
            }
        )
        if len(pairs) == count:
            return pairs
    raise AssertionError("not enough rows")


def write_dataset(directory: Path, train_rows: list[dict], validation_rows: list[dict] | None = None) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    for split, rows in (("train", train_rows), ("validation", validation_rows or [])):
        with open(directory / f"{split}.jsonl", "w") as handle:
            for index, row in enumerate(rows):
                handle.write(json.dumps({"id": f"{split}:{index}", **row}) + "\n")
    return directory


@pytest.fixture(scope="module")
def datasets(tmp_path_factory) -> dict[str, Path]:
    base = tmp_path_factory.mktemp("datasets")
    texts = [f"{r['instruction']} {r['output']}" for r in tuna_rows()[:24]]
    return {
        "text": write_dataset(base / "text", [{"text": t} for t in texts]),
        "chat": write_dataset(base / "chat", [{"messages": m} for m in conversations(8)]),
        "preference": write_dataset(base / "preference", preference_pairs(8), preference_pairs(2)),
    }


def make_job(
    base: Path, model_dir: Path, data_dir: Path, kind: str, type_: str, method: str, **hparams
) -> TrainSpec:
    return TrainSpec.model_validate(
        {
            "store_root": base.as_uri(),
            "job_id": "j",
            "label": f"d|tiny|{type_}-{method}",
            "step": "train",
            "output": (base / "jobs" / "j" / "train").as_uri(),
            "dataset": {"name": "d", "kind": kind, "uri": data_dir.as_uri()},
            "model": {"name": "tiny", "source": {"path": str(model_dir)}, "kind": "uri"},
            "hparams": {**HPARAMS, **hparams},
            "training": {"type": type_, "method": method},
        }
    )


def rows_of(data_dir: Path, split: str) -> list[dict]:
    path = data_dir / f"{split}.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def trainer_for(job: TrainSpec, tmp_path: Path):
    common = {
        "output_dir": str(tmp_path / "out"),
        "logging_steps": 1,
        "save_strategy": "no",
        "eval_strategy": "no",
        "report_to": [],
        "disable_tqdm": True,
        "dataloader_num_workers": 0,
    }
    data_dir = store.local_path(job.dataset.uri)
    trainer, tokenizer = build_trainer(job, rows_of(data_dir, "train"), [], common, [])
    return trainer, tokenizer


def train_and_compare(trainer) -> dict:
    """Train; which parameters were trainable, which moved, which state-dict entries (parameters, tied
    weights under each of their names, buffers) changed, and the logged records."""
    before = {name: p.detach().clone() for name, p in trainer.model.named_parameters()}
    state = {key: tensor.detach().clone() for key, tensor in trainer.model.state_dict().items()}
    trainable = {name for name, p in trainer.model.named_parameters() if p.requires_grad}
    trainer.train()
    after = dict(trainer.model.named_parameters())
    moved = {name for name, tensor in before.items() if not tensor.equal(after[name].detach())}
    changed = {key for key, tensor in trainer.model.state_dict().items() if not state[key].equal(tensor)}
    losses = [entry["loss"] for entry in trainer.state.log_history if "loss" in entry]
    return {
        "parameters": set(before),
        "trainable": trainable,
        "moved": moved,
        "changed": changed,
        "losses": losses,
        "history": trainer.state.log_history,
    }


def assert_loss_goes_down(losses: list[float]) -> None:
    assert len(losses) >= 6
    first, last = sum(losses[:3]) / 3, sum(losses[-3:]) / 3
    # A random model starts near ln(vocab); a 3% drop over a few steps is far beyond step-to-step noise.
    assert last < 0.97 * first, losses


def assert_only_the_last_layers_changed(run: dict, layers: int, total: int = 2) -> None:
    """method freeze: the parameters of the last `layers` of the model's `total` decoder layers are the
    trainable ones, every one of them moved, and no other state-dict entry (embeddings and the lm_head
    tied to them, the final norm, earlier layers, buffers) changed."""
    last = tuple(f"model.layers.{index}." for index in range(total - layers, total))
    assert run["trainable"] == {name for name in run["parameters"] if name.startswith(last)}, sorted(
        run["trainable"]
    )
    assert run["moved"] == run["trainable"], sorted(run["trainable"] - run["moved"])
    assert run["changed"] == run["trainable"], sorted(run["changed"] ^ run["trainable"])[:5]


def assert_only_trainable_moved(run: dict, every_trainable: bool = True) -> None:
    assert run["moved"] <= run["trainable"], sorted(run["moved"] - run["trainable"])[:5]
    if every_trainable:
        assert run["moved"] == run["trainable"], sorted(run["trainable"] - run["moved"])[:5]


# --- pretrain ---------------------------------------------------------------------------------


def test_pretrain_full_packs_rows_learns_every_token_and_moves_every_weight(
    tiny_model_dir, datasets, tmp_path
):
    job = make_job(tmp_path, tiny_model_dir, datasets["text"], "text", "pretrain", "full")
    trainer, _ = trainer_for(job, tmp_path)
    packed = trainer.train_dataset
    source_rows = len(rows_of(datasets["text"], "train"))
    lengths = [len(ids) for ids in packed["input_ids"]]
    assert len(lengths) < source_rows / 2  # several short rows share one packed row
    assert max(lengths) <= HPARAMS["max_seq_length"]
    assert sum(lengths[:-1]) / (len(lengths) - 1) > 0.8 * HPARAMS["max_seq_length"]  # the last may be short
    batch = trainer.data_collator([packed[i] for i in range(2)])
    # Padding-free rows: every token is learnt except each document's first, which nothing before it
    # in its own document predicts (position 0).
    starts = batch["position_ids"].eq(0)
    assert batch["labels"][starts].eq(-100).all()
    assert batch["labels"][~starts].equal(batch["input_ids"][~starts])

    run = train_and_compare(trainer)
    assert_loss_goes_down(run["losses"])
    assert run["trainable"] == {name for name, _ in trainer.model.named_parameters()}
    # Every weight but the embedding rows of tokens that never occur gets a gradient.
    assert {n for n in run["trainable"] if "embed" not in n} <= run["moved"]


# --- sft --------------------------------------------------------------------------------------


def unmasked_runs(tokenizer, input_ids, labels) -> list[str]:
    """The decoded runs of consecutive positions that carry a label."""
    runs, current = [], []
    for token, label in zip(input_ids, labels, strict=True):
        if label != -100:
            assert label == token
            current.append(token)
        elif current:
            runs.append(tokenizer.decode(current))
            current = []
    if current:
        runs.append(tokenizer.decode(current))
    return runs


@pytest.mark.parametrize("padding_free", [False, None, True])
def test_sft_labels_cover_every_answer_turn_and_nothing_else(
    tiny_model_dir, datasets, tmp_path, padding_free
):
    """None is the default, which is padding-free for SFT."""
    job = make_job(
        tmp_path, tiny_model_dir, datasets["chat"], "chat", "sft", "lora", padding_free=padding_free
    )
    trainer, tokenizer = trainer_for(job, tmp_path)
    chats = [row["messages"] for row in rows_of(datasets["chat"], "train")]
    batch = trainer.data_collator([trainer.train_dataset[i] for i in range(4)])
    expected = [f"{m['content']}<|im_end|>" for chat in chats[:4] for m in chat if m["role"] == "assistant"]
    runs = []
    for ids, labels in zip(batch["input_ids"].tolist(), batch["labels"].tolist(), strict=True):
        runs += unmasked_runs(tokenizer, ids, labels)
    assert runs == expected
    if padding_free is not False:
        assert batch["input_ids"].shape[0] == 1 and "position_ids" in batch
        assert "attention_mask" not in batch
    else:
        assert batch["input_ids"].shape[0] == 4 and "attention_mask" in batch


def test_answer_spans_follow_the_template_s_default_system_prompt(tiny_model_dir):
    """A template that adds text of its own (SmolLM2 adds a default system turn) shifts every span."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    tokenizer.chat_template = (
        "{% if messages[0]['role'] != 'system' %}<|im_start|>system\nBe brief.<|im_end|>\n{% endif %}"
        + tokenizer.chat_template
    )
    messages = [u("Who are you?"), a("Tuna."), u("Where from?"), a("The sea.")]
    text, spans = assistant_spans(tokenizer, messages)
    assert [text[start:stop] for start, stop in spans] == ["Tuna.<|im_end|>", "The sea.<|im_end|>"]
    features = sft_features(tokenizer, messages, max_length=None)
    assert unmasked_runs(
        tokenizer,
        features["input_ids"],
        [t if m else -100 for t, m in zip(features["input_ids"], features["assistant_masks"], strict=True)],
    ) == ["Tuna.<|im_end|>", "The sea.<|im_end|>"]


def test_a_template_that_rewrites_earlier_turns_is_refused_with_the_row(tiny_model_dir, datasets, tmp_path):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    # Renders only the last turn: a prefix of the conversation is not a prefix of its rendering.
    tokenizer.chat_template = "{{ messages[-1]['content'] }}"
    with pytest.raises(ValueError, match="does not render turn 1"):
        assistant_spans(tokenizer, [u("q"), a("x"), u("q2"), a("y")])


@pytest.mark.parametrize("method", ["full", "lora"])
def test_sft_learns_and_moves_only_its_trainable_weights(tiny_model_dir, datasets, tmp_path, method):
    job = make_job(tmp_path, tiny_model_dir, datasets["chat"], "chat", "sft", method, **LEARNING_RATE[method])
    trainer, _ = trainer_for(job, tmp_path)
    run = train_and_compare(trainer)
    assert_loss_goes_down(run["losses"])
    if method == "lora":
        assert run["trainable"] and all("lora_" in name for name in run["trainable"])
        assert_only_trainable_moved(run)
    else:
        assert {n for n in run["trainable"] if "embed" not in n} <= run["moved"]


# --- dpo --------------------------------------------------------------------------------------


def rewards(history: list[dict], key: str) -> list[float]:
    return [entry[key] for entry in history if key in entry]


@pytest.mark.parametrize("method", ["lora", "full"])
def test_dpo_separates_chosen_from_rejected(tiny_model_dir, datasets, tmp_path, method):
    job = make_job(
        tmp_path,
        tiny_model_dir,
        datasets["preference"],
        "preference",
        "dpo",
        method,
        dpo_beta=0.5,
        **LEARNING_RATE[method],
    )
    trainer, _ = trainer_for(job, tmp_path)
    if method == "lora":
        # The reference is the base with the adapter switched off: no second model in memory.
        assert trainer.ref_model is None
        assert type(trainer.model).__name__ == "PeftModelForCausalLM"
    else:
        assert trainer.ref_model is not None and trainer.ref_model is not trainer.model
        reference = {n: p.detach().clone() for n, p in trainer.ref_model.named_parameters()}
    run = train_and_compare(trainer)
    assert_loss_goes_down(run["losses"])
    chosen, rejected = rewards(run["history"], "rewards/chosen"), rewards(run["history"], "rewards/rejected")
    assert chosen[-1] > rejected[-1]
    assert sum(chosen[-3:]) - sum(rejected[-3:]) > sum(chosen[:1]) - sum(rejected[:1])
    assert sum(rewards(run["history"], "rewards/accuracies")[-3:]) / 3 > 0.5  # better than chance
    if method == "lora":
        assert_only_trainable_moved(run)
    else:
        assert {n for n in run["trainable"] if "embed" not in n} <= run["moved"]
        # The reference copy is frozen: outside the optimizer, and unchanged by training.
        optimized = {id(p) for group in trainer.optimizer.param_groups for p in group["params"]}
        assert not optimized & {id(p) for p in trainer.ref_model.parameters()}
        assert all(p.equal(reference[n]) for n, p in trainer.ref_model.named_parameters())


def test_the_dpo_step_writes_an_adapter_and_reward_metrics(tiny_model_dir, datasets, tmp_path):
    job = make_job(tmp_path, tiny_model_dir, datasets["preference"], "preference", "dpo", "lora", max_steps=4)
    result = train(job)
    out = store.local_path(job.output)
    assert result.adapter_uri and (out / "adapter" / "adapter_model.safetensors").exists()
    assert result.eval_loss is not None and result.steps == 4
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert any("rewards/chosen" in r and "rewards/rejected" in r for r in records)


# --- qlora and deepspeed (GPU only) -----------------------------------------------------------


@pytest.mark.parametrize("type_", [pytest.param(t, marks=needs_gpu("bitsandbytes")) for t in ("sft", "dpo")])
def test_qlora_trains_adapters_over_a_4bit_base(tiny_model_dir, datasets, tmp_path, type_):
    kind = "chat" if type_ == "sft" else "preference"
    job = make_job(tmp_path, tiny_model_dir, datasets[kind], kind, type_, "qlora", optim="paged_adamw_8bit")
    trainer, _ = trainer_for(job, tmp_path)
    quantized = [m for m in trainer.model.modules() if type(m).__name__ == "Linear4bit"]
    assert quantized and all(m.weight.quant_type == "nf4" for m in quantized)
    run = train_and_compare(trainer)
    assert_loss_goes_down(run["losses"])
    assert run["trainable"] and all("lora_" in name for name in run["trainable"])
    assert_only_trainable_moved(run)
    if type_ == "dpo":
        assert trainer.ref_model is None


@pytest.mark.parametrize("stage", [pytest.param(s, marks=needs_gpu("deepspeed")) for s in ("zero2", "zero3")])
def test_deepspeed_zero_trains(tiny_model_dir, datasets, tmp_path, monkeypatch, stage):
    for key, value in {
        "MASTER_ADDR": "127.0.0.1",
        "MASTER_PORT": "29511",
        "RANK": "0",
        "LOCAL_RANK": "0",
    }.items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("WORLD_SIZE", "1")
    job = make_job(tmp_path, tiny_model_dir, datasets["chat"], "chat", "sft", "full", deepspeed=stage)
    trainer, _ = trainer_for(job, tmp_path)
    assert trainer.is_deepspeed_enabled
    trainer.train()
    losses = [entry["loss"] for entry in trainer.state.log_history if "loss" in entry]
    assert_loss_goes_down(losses)


# --- what is refused, and when ----------------------------------------------------------------


def conf(training: dict) -> dict:
    return {
        "name": "e",
        "datasets": [{"name": "d", "uri": "x.jsonl"}],
        "models": [{"name": "tiny", "uri": "/m"}],
        "hparams": [{"preset": "lora-fast"}],
        "training": training,
    }


@pytest.mark.parametrize(
    ("type_", "method"),
    [("sft", "full"), ("sft", "lora"), ("dpo", "lora"), ("dpo", "full"), ("pretrain", "full")],
)
def test_pairs_that_run_on_cpu_validate(type_, method, monkeypatch):
    monkeypatch.setenv("TUNERFLOW_CUDA", "0")
    assert parse_experiment(conf({"type": type_, "method": method})).training.method == method


def test_qlora_is_refused_at_validation_without_cuda_and_accepted_with_gpu_pods(monkeypatch):
    monkeypatch.setenv("TUNERFLOW_CUDA", "0")
    with pytest.raises(
        ConfError, match=re.escape("training: type 'dpo' with method 'qlora' is refused: QLoRA")
    ):
        parse_experiment(conf({"type": "dpo", "method": "qlora"}))
    monkeypatch.delenv("TUNERFLOW_CUDA")
    monkeypatch.setenv("TUNERFLOW_BACKEND", "local")
    assert cuda_visible() == Path("/dev/nvidiactl").exists()
    monkeypatch.setenv("TUNERFLOW_BACKEND", "kubernetes")  # the train step runs in GPU pods
    assert parse_experiment(conf({"type": "dpo", "method": "qlora"})).training.method == "qlora"


def test_pretrain_with_adapters_is_refused_with_the_reason(monkeypatch):
    with pytest.raises(ConfError, match="pretraining adapts every weight; use method 'full'"):
        parse_experiment(conf({"type": "pretrain", "method": "lora"}))


def test_precision_auto_picks_per_device_and_half_precision_needs_cuda():
    assert resolve_precision("auto", cuda=False, bf16_supported=False) == "fp32"
    assert resolve_precision("auto", cuda=True, bf16_supported=True) == "bf16"
    assert resolve_precision("auto", cuda=True, bf16_supported=False) == "fp16"
    with pytest.raises(StepError, match=re.escape("hparams.precision 'bf16' needs a CUDA device")):
        resolve_precision("bf16", cuda=False, bf16_supported=False)


def test_gradient_accumulation_spreads_the_global_batch_over_devices():
    assert gradient_accumulation(32, 4, 1) == 8
    assert gradient_accumulation(32, 4, 4) == 2
    with pytest.raises(StepError, match="batch_size 32 is not a multiple of micro_batch_size 4 x 3"):
        gradient_accumulation(32, 4, 3)


@pytest.mark.parametrize(
    ("hparams", "training", "message"),
    [
        ({"attn_implementation": "flash_attention_2"}, ("sft", "lora"), "needs the flash-attn package"),
        ({"optim": "paged_adamw_8bit"}, ("sft", "lora"), "'paged_adamw_8bit' needs bitsandbytes"),
        ({"deepspeed": "zero3"}, ("sft", "full"), "'zero3' needs the deepspeed package"),
        ({"packing": True}, ("dpo", "lora"), "packing is refused for DPO"),
        ({"padding_free": True}, ("dpo", "lora"), "padding_free is refused for DPO"),
        ({}, ("sft", "qlora"), "needs a CUDA device"),
    ],
)
def test_settings_this_machine_cannot_run_are_refused_before_loading(hparams, training, message, monkeypatch):
    monkeypatch.setenv("TUNERFLOW_CUDA", "1")  # let the conf through; the step sees no GPU
    hp = ResolvedHParams.model_validate({**HPARAMS, **hparams})
    with pytest.raises(StepError, match=re.escape(message)):
        check_runtime(hp, TrainingConfig(type=training[0], method=training[1]), cuda=False)


def test_min_learning_rate_needs_the_cosine_schedule():
    with pytest.raises(ValueError, match="min_learning_rate 1e-05 needs lr_scheduler cosine"):
        ResolvedHParams.model_validate({**HPARAMS, "min_learning_rate": 1e-5, "lr_scheduler": "linear"})
    hp = ResolvedHParams.model_validate({**HPARAMS, "min_learning_rate": 1e-5, "lr_scheduler": "cosine"})
    assert hp.min_learning_rate == 1e-5
