"""Step: train one job (dataset x base model x hyperparameter group). `python -m tasks.train --job ...`

SFT trains on prompt-completion pairs so that the loss covers the answer tokens only; pretraining
trains on raw text, packed. LoRA adapters come from PEFT, the loop from TRL's SFTTrainer.
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import Any

from tasks import store
from tasks.catalog import CatalogEntry
from tasks.config import ResolvedHParams, TrainingConfig, dataset_kind_problem
from tasks.models import apply_tokenizer_overrides, load_tokenizer, weights_location
from tasks.step import StepError, main

log = logging.getLogger("tunerflow.train")


def read_split(dataset_uri: str, split: str) -> list[dict[str, Any]]:
    path = store.local_path(store.join(dataset_uri, f"{split}.jsonl"))
    with open(path) as handle:
        return [json.loads(line) for line in handle if line.strip()]


def to_trl_rows(rows: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    """Internal rows to TRL's dataset types: conversational prompt-completion, or language modelling text."""
    if kind == "text":
        return [{"text": row["text"]} for row in rows]
    if kind == "preference":  # TRL's conversational preference type, for dpo
        return [
            {"prompt": row["prompt"], "chosen": row["chosen"], "rejected": row["rejected"]} for row in rows
        ]
    return [{"prompt": row["messages"][:-1], "completion": row["messages"][-1:]} for row in rows]


def _progress_callback(metrics_path: Path):
    from transformers import TrainerCallback

    class Progress(TrainerCallback):
        """Writes metrics.jsonl and one readable progress line per logging interval."""

        def on_train_begin(self, args, state, control, **kwargs):
            self.started = time.perf_counter()

        def on_log(self, args, state, control, logs=None, **kwargs):
            logs = dict(logs or {})
            elapsed = time.perf_counter() - self.started
            tokens = state.num_input_tokens_seen or 0
            record = {"step": state.global_step, "epoch": state.epoch, "elapsed_s": round(elapsed, 2), **logs}
            if tokens:
                record["tokens_per_s"] = round(tokens / max(elapsed, 1e-9), 1)
            with open(metrics_path, "a") as handle:
                handle.write(json.dumps(record) + "\n")
            if "loss" in logs:
                done = state.global_step / max(state.max_steps, 1)
                eta = elapsed / done - elapsed if done else float("nan")
                log.info(
                    "step %d/%d loss %.4f lr %.2e tokens/s %.0f eta %.0fs",
                    state.global_step,
                    state.max_steps,
                    logs["loss"],
                    logs.get("learning_rate", 0.0),
                    record.get("tokens_per_s", 0.0),
                    eta,
                )

    return Progress()


def train(job: dict[str, Any]) -> dict[str, Any]:
    """Fine-tune the base model on the dataset's train split; save the adapter (or full model)."""
    problem = dataset_kind_problem(job["training"]["type"], job["dataset"]["name"], job["dataset"]["kind"])
    if problem:
        raise StepError(problem)
    import torch
    from datasets import Dataset
    from transformers import AutoModelForCausalLM, PrinterCallback
    from trl import SFTConfig, SFTTrainer

    entry = CatalogEntry.model_validate(job["model"])
    hp = ResolvedHParams.model_validate(job["hparams"])
    training = TrainingConfig.model_validate(job["training"])
    dataset = job["dataset"]
    out = store.local_path(job["output"])

    torch.manual_seed(hp.seed)
    tokenizer = load_tokenizer(entry, job["store_root"])
    model = AutoModelForCausalLM.from_pretrained(
        weights_location(entry, job["store_root"]), dtype=torch.float32
    )
    apply_tokenizer_overrides(tokenizer, entry, model)
    train_rows = to_trl_rows(read_split(dataset["uri"], "train"), dataset["kind"])
    validation_rows = to_trl_rows(read_split(dataset["uri"], "validation"), dataset["kind"])

    peft_config = None
    if training.method == "lora":
        from peft import LoraConfig

        peft_config = LoraConfig(
            r=hp.lora_r,
            lora_alpha=hp.lora_alpha,
            lora_dropout=hp.lora_dropout,
            target_modules=hp.lora_target_modules,
            task_type="CAUSAL_LM",
        )
    world_size = max(torch.cuda.device_count(), 1)
    cuda = torch.cuda.is_available()
    args = SFTConfig(
        output_dir=str(out / "checkpoints"),
        per_device_train_batch_size=hp.micro_batch_size,
        per_device_eval_batch_size=hp.micro_batch_size,
        gradient_accumulation_steps=max(hp.batch_size // (hp.micro_batch_size * world_size), 1),
        learning_rate=hp.learning_rate,
        lr_scheduler_type=hp.lr_scheduler,
        warmup_ratio=hp.warmup_ratio,
        num_train_epochs=hp.epochs,
        max_steps=hp.max_steps,
        weight_decay=hp.weight_decay,
        logging_steps=hp.logging_steps,
        save_strategy="no",
        report_to=[],
        seed=hp.seed,
        data_seed=hp.seed,
        max_length=hp.max_seq_length,
        packing=training.type == "pretrain",
        completion_only_loss=training.type == "sft",
        bf16=cuda and torch.cuda.is_bf16_supported(),
        use_cpu=not cuda,
        dataloader_num_workers=0,
        include_num_input_tokens_seen="non_padding",
        disable_tqdm=True,
        eos_token=tokenizer.eos_token,
        pad_token=tokenizer.pad_token,
    )
    trainer = SFTTrainer(
        model=model,
        args=args,
        train_dataset=Dataset.from_list(train_rows),
        eval_dataset=Dataset.from_list(validation_rows) if validation_rows else None,
        processing_class=tokenizer,
        peft_config=peft_config,
        callbacks=[_progress_callback(out / "metrics.jsonl")],
    )
    # Metrics go to metrics.jsonl and the log; stdout carries only the step's JSON result line.
    trainer.remove_callback(PrinterCallback)
    started = time.perf_counter()
    outcome = trainer.train()
    runtime = time.perf_counter() - started
    eval_loss = trainer.evaluate()["eval_loss"] if validation_rows else None

    weights_dir = out / ("adapter" if peft_config else "model")
    trainer.model.save_pretrained(weights_dir, safe_serialization=True)
    tokenizer.save_pretrained(weights_dir)
    tokens = trainer.state.num_input_tokens_seen or 0
    return {
        "job_id": job["job_id"],
        "label": job["label"],
        "status": "succeeded",
        "method": training.method,
        "adapter_uri": store.to_uri(weights_dir) if peft_config else None,
        "model_uri": None if peft_config else store.to_uri(weights_dir),
        "metrics_uri": store.to_uri(out / "metrics.jsonl"),
        "train_loss": round(outcome.training_loss, 6),
        "eval_loss": round(eval_loss, 6) if eval_loss is not None else None,
        "steps": trainer.state.global_step,
        "runtime_s": round(runtime, 2),
        "tokens_per_s": round(tokens / runtime, 1) if runtime else None,
    }


if __name__ == "__main__":
    raise SystemExit(main("train", train))
