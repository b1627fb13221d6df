"""SFT training throughput: the project's trainer against plain `trl.SFTTrainer` defaults, side by side.

The same model, seed, learning rate, micro batch, global batch, optimizer steps and variable-length chat
rows go through both sides, each in its own subprocess (so that peak memory does not mix):

- project: `tasks.training.train_types.build_trainer`, the trainer the train step builds, from an
  hparams preset
  (`lora-fast` by default) as shipped: padding-free micro-batches for SFT (`--padded` turns them off,
  `--packing` packs rows instead);
- baseline: `trl.SFTTrainer(model=<path>, args=SFTConfig(<shared essentials only>), peft_config=<the same
  LoRA>)`, everything else TRL's defaults (pads each micro-batch to its longest row).

Rows: single-turn conversations built deterministically from include/data/tuna_identity.jsonl, with
answers of a wide length distribution (most short, a few long), which is where padding costs. The
project trains on the assistant answer only; so that the losses are the same objective, the baseline gets
the same conversations as conversational prompt/completion rows, on which TRL's default
(`completion_only_loss=None`) takes the loss on the completion only.

Measured per side: non-padding tokens per second over the steps after `--warmup` (the Trainer's
`num_input_tokens_seen` with `non_padding`, set on both sides as instrumentation), peak memory (CPU: the
child's peak RSS; CUDA: `torch.cuda.max_memory_allocated`), and the loss. Both sides see the same rows in
the same order (same seed, same sampler), so after the same number of steps they have seen the same real
tokens (checked, and printed); the loss compared is the mean of the per-step training losses over all
steps, i.e. over the same token budget (one step's loss is too noisy to compare at 1%). On CUDA the model
FLOPs utilisation is printed: 6 * parameters * tokens/s / the device's peak bf16 FLOPs.

The last line is one JSON object: {"metric", "value", "baseline", "ratio", "target", ...}.

    python bench/train_throughput.py                          # SmolLM2-135M, LoRA, lora-fast
    python bench/train_throughput.py --padded                 # the project with padded batches
    python bench/train_throughput.py --liger --compile        # the project with Liger and torch.compile (GPU)
    python bench/train_throughput.py --model tiny --steps 4 --rows 64   # smoke run
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

# Importable once the repository is on the path; none of these loads torch (the parent process stays light).
from tasks.config.catalog import CatalogEntry, models, resolve_hparams  # noqa: E402
from tasks.config.hparams import HParams  # noqa: E402
from tasks.config.training import TrainingConfig  # noqa: E402
from tasks.contracts.prepare import PreparedDataset  # noqa: E402
from tasks.contracts.train import TrainSpec  # noqa: E402
from tasks.data.parts import cache_dir  # noqa: E402
from tasks.storage import store  # noqa: E402
from tasks.training.base_models import weights_location  # noqa: E402
from tasks.training.peft_methods import lora_config  # noqa: E402
from tasks.training.train_types import build_trainer  # noqa: E402
from tests.fixtures.tiny_model import build_tiny_model  # noqa: E402

MODEL = "smollm2-135m-instruct"
TARGET_CPU, TARGET_CUDA, TARGET_MEMORY, TARGET_LOSS_PCT = 1.3, 1.5, 0.7, 1.0
# Dense bf16 peak FLOPs by device name (a substring of torch.cuda.get_device_name()).
PEAK_BF16 = {"H200": 989e12, "H100": 989e12, "A100": 312e12, "L40S": 362e12, "A10G": 70e12, "L4": 121e12}


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


# ---------------------------------------------------------------------------------------------- data


def make_rows(count: int, seed: int, long_share: float = 0.2) -> list[dict[str, Any]]:
    """`count` single-turn chat rows: a tuna_identity question, an answer of 1-3 sentences for most rows
    and 15-50 sentences for `long_share` of them (a long tail, as real SFT sets have)."""
    source = [
        json.loads(line)
        for line in (REPO / "include" / "data" / "tuna_identity.jsonl").read_text().splitlines()
        if line.strip()
    ]
    rng = random.Random(seed)
    rows = []
    for index in range(count):
        question = rng.choice(source)
        sentences = rng.randint(15, 50) if rng.random() < long_share else rng.randint(1, 3)
        answer = " ".join([question["output"]] + [rng.choice(source)["output"] for _ in range(sentences - 1)])
        rows.append(
            {
                "id": f"row-{index}",
                "messages": [
                    {"role": "user", "content": question["instruction"]},
                    {"role": "assistant", "content": answer},
                ],
            }
        )
    return rows


def as_prompt_completion(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The same conversations as TRL's conversational prompt/completion rows (the last turn is the answer)."""
    return [{"prompt": row["messages"][:-1], "completion": row["messages"][-1:]} for row in rows]


# -------------------------------------------------------------------------------------------- one side


def hparams(args: argparse.Namespace) -> Any:
    values: dict[str, Any] = {
        "preset": args.preset,
        "max_steps": args.steps,
        "batch_size": args.batch_size,
        "micro_batch_size": args.micro_batch_size,
        "learning_rate": args.learning_rate,
        "seed": args.seed,
        "max_seq_length": args.max_length,
        "logging_steps": 1,
    }
    if args.padded:
        values["padding_free"] = False
    if args.packing:
        values["packing"] = True
    if args.liger:
        values["use_liger_kernel"] = True
    if args.compile:
        values["torch_compile"] = True
    return resolve_hparams(HParams.model_validate(values))


def recorder(cuda: bool) -> Any:
    """A callback keeping (step, seconds since training began, non-padding tokens seen, loss) per step."""
    import torch
    from transformers import TrainerCallback

    class Record(TrainerCallback):
        def __init__(self) -> None:
            self.steps: list[dict[str, Any]] = []

        def on_train_begin(self, args, state, control, **kwargs):
            self.started = time.perf_counter()

        def on_step_end(self, args, state, control, **kwargs):
            if cuda:
                torch.cuda.synchronize()
            self.steps.append(
                {
                    "step": state.global_step,
                    "s": time.perf_counter() - self.started,
                    "tokens": int(state.num_input_tokens_seen or 0),
                }
            )

        def on_log(self, args, state, control, logs=None, **kwargs):
            if logs and "loss" in logs and self.steps and self.steps[-1]["step"] == state.global_step:
                self.steps[-1]["loss"] = float(logs["loss"])
                last = self.steps[-1]
                log(f"step {last['step']} loss {last['loss']:.4f} tokens {last['tokens']} {last['s']:.1f}s")

    return Record()


def project_trainer(args: argparse.Namespace, rows: list[dict[str, Any]], out: str, record: Any) -> Any:
    model = (
        models()[MODEL]
        if args.model == MODEL
        else CatalogEntry(name="tiny", source={"path": args.model}, kind="uri")
    )
    # The spec the train step would read for these rows (the directory holding their train.jsonl).
    spec = TrainSpec(
        store_root=args.store,
        job_id="bench-train-throughput",
        label=f"bench|{model.name}|{args.preset}",
        output=store.to_uri(out),
        dataset=PreparedDataset(
            name="bench",
            uri=store.to_uri(Path(args.rows_file).parent),
            kind="chat",
            counts={"train": len(rows)},
        ),
        model=model,
        hparams=hparams(args),
        training=TrainingConfig(type="sft", method=args.method),
    )
    # What tasks.training.trainer passes as `common`, less checkpoints, evaluation and TensorBoard
    # (not throughput).
    common = {
        "output_dir": out,
        "logging_steps": 1,
        "save_strategy": "no",
        "eval_strategy": "no",
        "report_to": [],
        "dataloader_num_workers": 0,
        "include_num_input_tokens_seen": "non_padding",
        "disable_tqdm": True,
    }
    trainer, _ = build_trainer(spec, rows, [], common, [record])
    return trainer


def baseline_trainer(args: argparse.Namespace, rows: list[dict[str, Any]], out: str, record: Any) -> Any:
    import torch
    from datasets import Dataset
    from trl import SFTConfig, SFTTrainer

    hp = hparams(args)
    path = weights_location(models()[MODEL], args.store) if args.model == MODEL else args.model
    config = SFTConfig(
        output_dir=out,
        per_device_train_batch_size=hp.micro_batch_size,
        gradient_accumulation_steps=hp.batch_size // hp.micro_batch_size,
        learning_rate=hp.learning_rate,
        max_steps=hp.max_steps,
        seed=hp.seed,
        logging_steps=1,
        report_to=[],
        save_strategy="no",
        disable_tqdm=True,
        # TRL defaults to bf16, which a CPU cannot train in; there both sides train in fp32 (as the project's
        # precision auto does). On CUDA TRL's default (bf16) stays, as does every other default, including
        # gradient_checkpointing=True.
        **({} if torch.cuda.is_available() else {"bf16": False}),
        # Instrumentation only (the same count as the project side), not a training setting.
        include_num_input_tokens_seen="non_padding",
    )
    return SFTTrainer(
        model=path,
        args=config,
        train_dataset=Dataset.from_list(as_prompt_completion(rows)),
        peft_config=lora_config(hp) if args.method == "lora" else None,
        callbacks=[record],
    )


def run_side(args: argparse.Namespace) -> dict[str, Any]:
    import torch

    cuda = torch.cuda.is_available()
    rows = [json.loads(line) for line in Path(args.rows_file).read_text().splitlines()]
    record = recorder(cuda)
    with tempfile.TemporaryDirectory() as out:
        # tasks.training.trainer seeds torch before building the trainer (LoRA's initial weights); so
        # does the baseline.
        torch.manual_seed(args.seed)
        build = project_trainer if args.side == "project" else baseline_trainer
        trainer = build(args, rows, out, record)
        if cuda:
            torch.cuda.reset_peak_memory_stats()
        trainer.train()
    steps = record.steps
    warm = steps[args.warmup - 1] if args.warmup else {"s": 0.0, "tokens": 0}
    timed_tokens = steps[-1]["tokens"] - warm["tokens"]
    timed_s = steps[-1]["s"] - warm["s"]
    losses = [step["loss"] for step in steps if "loss" in step]
    params = sum(p.numel() for p in trainer.model.parameters())
    return {
        "side": args.side,
        "device": torch.cuda.get_device_name() if cuda else "cpu",
        "steps": len(steps),
        "tokens": steps[-1]["tokens"],
        "tokens_per_step": [step["tokens"] for step in steps],
        "timed_tokens": timed_tokens,
        "timed_s": timed_s,
        "tokens_per_s": timed_tokens / timed_s,
        "peak_memory_mb": (
            torch.cuda.max_memory_allocated() / 2**20
            if cuda
            else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        ),
        "peak_memory_kind": "cuda max_memory_allocated" if cuda else "peak RSS",
        "losses": losses,
        "mean_loss": sum(losses) / len(losses),
        "params": params,
    }


# ---------------------------------------------------------------------------------------------- parent


def peak_flops(device: str) -> float | None:
    for name, flops in PEAK_BF16.items():
        if name in device:
            return flops
    return None


def child(args: argparse.Namespace, side: str, rows_file: Path) -> dict[str, Any]:
    command = [sys.executable, __file__, "--side", side, "--rows-file", str(rows_file), "--model", args.model]
    for option in ("store", "preset", "method", "steps", "batch_size", "micro_batch_size", "learning_rate"):
        command += [f"--{option.replace('_', '-')}", str(getattr(args, option))]
    command += ["--seed", str(args.seed), "--max-length", str(args.max_length), "--warmup", str(args.warmup)]
    command += ["--padded"] * args.padded + ["--packing"] * args.packing
    command += ["--liger"] * args.liger + ["--compile"] * args.compile
    log(f"running the {side} side")
    done = subprocess.run(command, stdout=subprocess.PIPE, text=True)
    if done.returncode:
        raise SystemExit(f"the {side} side failed (exit {done.returncode}); its stderr is above")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", default=MODEL, help=f"'{MODEL}' (default) or 'tiny' (the test model)")
    parser.add_argument("--method", choices=["lora", "full"], default="lora")
    parser.add_argument("--preset", default="lora-fast", help="the project side's hparams preset")
    parser.add_argument(
        "--padded", action="store_true", help="project side: padding_free false (padded micro-batches)"
    )
    parser.add_argument("--packing", action="store_true", help="project side: hparams packing")
    parser.add_argument("--liger", action="store_true", help="project side: use_liger_kernel (CUDA only)")
    parser.add_argument("--compile", action="store_true", help="project side: torch_compile (CUDA only)")
    parser.add_argument("--steps", type=int, default=4, help="optimizer steps per side")
    parser.add_argument("--warmup", type=int, default=1, help="steps left out of the timing")
    parser.add_argument("--batch-size", type=int, default=8, help="rows per optimizer step")
    parser.add_argument("--micro-batch-size", type=int, default=4)
    parser.add_argument("--learning-rate", type=float, default=1e-3)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--max-length", type=int, default=1024, help="longest row (TRL's default max_length)")
    parser.add_argument(
        "--rows", type=int, default=None, help="rows generated (default: enough for the steps)"
    )
    parser.add_argument("--store", default=None, help="store root (default: a bench store in the cache dir)")
    parser.add_argument("--side", choices=["project", "baseline"], help=argparse.SUPPRESS)
    parser.add_argument("--rows-file", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.side:
        print(json.dumps(run_side(args)))
        return 0

    if args.warmup >= args.steps:
        parser.error("--warmup must be below --steps")
    store_root = args.store or (cache_dir() / "bench-train-store").as_uri()
    args.store = store_root if "://" in store_root else store.to_uri(store_root)
    with tempfile.TemporaryDirectory() as work:
        if args.model == "tiny":
            args.model = str(build_tiny_model(Path(work) / "tiny"))
        elif args.model == MODEL:
            log(f"locating {MODEL} (converted from its GGUF once per store)")
            weights_location(models()[MODEL], args.store)
        else:
            parser.error(f"--model must be '{MODEL}' or 'tiny'")
        rows = make_rows(args.rows or args.steps * args.batch_size, args.seed)
        rows_file = Path(work) / "train.jsonl"
        rows_file.write_text("".join(json.dumps(row) + "\n" for row in rows))
        project = child(args, "project", rows_file)
        baseline = child(args, "baseline", rows_file)

    cuda = project["device"] != "cpu"
    target = TARGET_CUDA if cuda else TARGET_CPU
    ratio = project["tokens_per_s"] / baseline["tokens_per_s"]
    memory_ratio = project["peak_memory_mb"] / baseline["peak_memory_mb"]
    loss_diff = (project["mean_loss"] - baseline["mean_loss"]) / baseline["mean_loss"] * 100
    flops = peak_flops(project["device"]) if cuda else None
    mfu = (
        {side["side"]: 6 * side["params"] * side["tokens_per_s"] / flops for side in (project, baseline)}
        if flops
        else None
    )
    same_tokens = project["tokens_per_step"] == baseline["tokens_per_step"]

    hp = f"preset {args.preset}" + (", padded" if args.padded else "") + (", packing" if args.packing else "")
    print(f"device {project['device']}; model {MODEL if args.model == MODEL else 'tiny'}, {args.method}")
    print(
        f"{args.steps} steps x {args.batch_size} rows (micro batch {args.micro_batch_size}), "
        f"lr {args.learning_rate}, seed {args.seed}; project: {hp}; baseline: trl.SFTTrainer defaults"
    )
    print(
        f"{'':10} {'tokens/s':>10} {'peak MB':>10} {'mean loss':>10} {'last loss':>10} "
        f"{'tokens':>9} {'timed s':>8}"
    )
    for side in (project, baseline):
        print(
            f"{side['side']:10} {side['tokens_per_s']:10.1f} {side['peak_memory_mb']:10.0f} "
            f"{side['mean_loss']:10.4f} {side['losses'][-1]:10.4f} {side['tokens']:9d} {side['timed_s']:8.2f}"
        )
    print(
        f"ratio (project / baseline): tokens/s {ratio:.3f} (target >= {target}), "
        f"peak memory {memory_ratio:.3f} ({project['peak_memory_kind']}), mean loss {loss_diff:+.3f}%"
    )
    print(
        f"same non-padding tokens at every step: {same_tokens} "
        f"(project {project['tokens']}, baseline {baseline['tokens']}; first {args.warmup} step(s) not timed)"
    )
    if cuda:
        print(
            "MFU (6 * params * tokens/s / peak bf16): "
            + (
                ", ".join(f"{name} {value:.2%}" for name, value in mfu.items())
                if mfu
                else "unknown device peak"
            )
        )

    passed = ratio >= target and same_tokens
    if cuda:
        passed = passed and memory_ratio <= TARGET_MEMORY and abs(loss_diff) <= TARGET_LOSS_PCT
    summary = {
        "metric": "sft non-padding tokens/s, project trainer / trl.SFTTrainer defaults "
        f"({'cuda' if cuda else 'cpu'})",
        "value": round(project["tokens_per_s"], 1),
        "baseline": round(baseline["tokens_per_s"], 1),
        "ratio": round(ratio, 4),
        "target": target,
        "peak_memory_ratio": round(memory_ratio, 4),
        "peak_memory_target": TARGET_MEMORY if cuda else None,
        "loss_project": round(project["mean_loss"], 6),
        "loss_baseline": round(baseline["mean_loss"], 6),
        "loss_diff_pct": round(loss_diff, 4),
        "tokens_project": project["tokens"],
        "tokens_baseline": baseline["tokens"],
        "same_tokens": same_tokens,
        "steps": args.steps,
        "mfu": round(mfu["project"], 5) if mfu else None,
        "passed": passed,
    }
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    raise SystemExit(main())
