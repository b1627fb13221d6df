"""Export ("compile") on the demo model: PyTorch fp32 against ONNX fp32 and the shipped INT8, side by side.

On the bundled SmolLM2-135M-Instruct, fine-tuned the way the demo does it (LoRA, the `lora-fast` preset, on
the prepared `builtin:tuna_identity` set; `--fine-tune-steps 0` keeps the untouched base model), one run:

- exports ONNX fp32 and INT8 with the shipped settings (`ExportConfig()`: int8_mode auto, calibration on the
  experiment's own training rows, 32-weight blocks) through `tasks.exporting.export_step.export_formats`;
- measures on CPU, batch 1, 128 tokens, one forward pass each: p50/p95 latency, with the models run in turn
  in every round so that any load from other processes falls on all of them alike;
- weight size (safetensors against .onnx files);
- the demo's scoring (exact_match, rouge_l, 24 new tokens, greedy) of PyTorch, ONNX fp32 and INT8 on the
  held-out rows (test and validation splits), and INT8's drop against PyTorch;
- where torch sees a CUDA device and onnxruntime has its CUDA provider: fp16 ONNX against fp32 PyTorch on
  the GPU.

The last line is one JSON object: {"metric", "value", "baseline", "ratio", "target", ...}.

    python bench/export.py                                   # the full run
    python bench/export.py --runs 3 --rows 4 --fine-tune-steps 0 --samples 4 --seq-length 32   # smoke
    python bench/export.py ... --model-dir DIR   # the same on any Hugging Face directory
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

MODEL = "smollm2-135m-instruct"
DEMO = REPO / "include" / "configs" / "experiments" / "demo.yaml"
TOKENS = 128
WARMUP = 3
TARGET_LATENCY, TARGET_SIZE, TARGET_DROP, TARGET_FP16 = 0.6, 0.3, 0.01, 0.5


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def demo_conf() -> dict[str, Any]:
    import yaml

    return yaml.safe_load(DEMO.read_text())


def model_entry(model_dir: str | None) -> Any:
    """The catalog's demo model, or a local Hugging Face directory as a path entry (for smoke runs)."""
    from tasks.config.catalog import CatalogEntry, models

    if not model_dir:
        return models()[MODEL]
    path = Path(model_dir).resolve()
    return CatalogEntry(name=path.name, source={"path": str(path)}, kind="uri")


def prepared_dataset(store_root: str, conf: dict[str, Any]) -> dict[str, Any]:
    from tasks.contracts.prepare import PrepareSpec
    from tasks.data.preparation import prepare

    result = prepare(PrepareSpec(store_root=store_root, dataset=conf["datasets"][0]))
    return {key: result[key] for key in ("name", "uri", "kind", "counts")}


def fine_tuned(
    store_root: str, conf: dict[str, Any], dataset: dict[str, Any], steps: int, work: Path, entry: Any
) -> Path:
    """The model the demo ships: the base with a LoRA adapter trained on the demo set, merged."""
    from tasks.config.catalog import resolve_hparams
    from tasks.config.hparams import HParams
    from tasks.contracts.train import TrainResult, TrainSpec
    from tasks.exporting.export_step import merge
    from tasks.runtime.step import execute
    from tasks.training.base_models import weights_location
    from tasks.training.trainer import train

    merged = work / "merged"
    if steps <= 0:
        return Path(weights_location(entry, store_root))
    group = HParams.model_validate({**conf["hparams"][0], "max_steps": steps})
    job = TrainSpec.model_validate(
        {
            "store_root": store_root,
            "job_id": f"bench-export-{steps}",
            "label": f"tuna|{entry.name}|bench",
            "step": "train",
            "output": f"{store_root.rstrip('/')}/bench/export/train-{steps}",
            "dataset": dataset,
            "model": entry.model_dump(),
            "hparams": resolve_hparams(group).model_dump(),
            "training": conf["training"],
        }
    )
    log(f"fine-tuning {entry.name} with LoRA for {steps} steps (committed runs are reused)")
    trained = execute("train", train, job, TrainResult)
    merge(entry, store_root, merged, adapter_uri=trained["adapter_uri"])
    return merged


def interleaved_latency(models: dict[str, Any], vocab: int, runs: int, device: str = "cpu") -> dict[str, Any]:
    """p50/p95 ms of one batch-1 forward pass per model, the models taking turns in every round."""
    import numpy as np
    import torch

    ids = torch.randint(0, vocab, (1, TOKENS), generator=torch.Generator().manual_seed(0)).to(device)
    batch = {"input_ids": ids, "attention_mask": torch.ones_like(ids)}
    timings: dict[str, list[float]] = {name: [] for name in models}
    with torch.inference_mode():
        for round_ in range(WARMUP + runs):
            for name, model in models.items():
                started = time.perf_counter()
                model(**batch)
                if device == "cuda":
                    torch.cuda.synchronize()
                if round_ >= WARMUP:
                    timings[name].append((time.perf_counter() - started) * 1000)
    out = {}
    for name, values in timings.items():
        p50, p95 = np.percentile(values, [50, 95])
        out[name] = {"p50_ms": round(float(p50), 2), "p95_ms": round(float(p95), 2), "runs": len(values)}
    return out


def cuda_ready() -> bool:
    import onnxruntime
    import torch

    return torch.cuda.is_available() and "CUDAExecutionProvider" in onnxruntime.get_available_providers()


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--runs", type=int, default=30, help="timed forward passes per model")
    parser.add_argument(
        "--rows", type=int, default=0, help="held-out rows scored (0: every test+validation row)"
    )
    parser.add_argument(
        "--fine-tune-steps", type=int, default=24, help="LoRA steps first (0: the base model)"
    )
    parser.add_argument(
        "--samples", type=int, default=None, help="calibration windows (default: ExportConfig)"
    )
    parser.add_argument("--seq-length", type=int, default=None, help="calibration window length")
    parser.add_argument("--int8-mode", choices=["auto", "static", "dynamic"], default=None)
    parser.add_argument("--block-size", type=int, default=None, help="int8_block_size (default: shipped)")
    parser.add_argument("--store", default=None, help="store root (default: a bench store in the cache dir)")
    parser.add_argument(
        "--model-dir",
        default=None,
        help="smoke runs: export this Hugging Face directory instead of the demo model",
    )
    args = parser.parse_args()

    import torch
    from optimum.onnxruntime import ORTModelForCausalLM
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from tasks.config.export import ExportConfig
    from tasks.config.scoring import ScoringConfig
    from tasks.data.parts import cache_dir
    from tasks.exporting.export_step import export_formats
    from tasks.exporting.onnx_fp import weights_size
    from tasks.scoring.evaluation import answer_and_score
    from tasks.storage import store
    from tasks.training.base_models import apply_tokenizer_overrides
    from tasks.training.trainer import read_split

    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    entry = model_entry(args.model_dir)
    conf = demo_conf()
    store_root = args.store or (cache_dir() / "bench-export-store").as_uri()
    if "://" not in store_root:
        store_root = store.to_uri(store_root)
    export_conf = dict(conf.get("export") or {})
    export_conf.pop("formats", None)
    calibration = dict(export_conf.get("calibration") or {})
    if args.samples:
        calibration["samples"] = args.samples
    if args.seq_length:
        calibration["seq_length"] = args.seq_length
    export_conf["calibration"] = calibration
    if args.int8_mode:
        export_conf["int8_mode"] = args.int8_mode
    if args.block_size:
        export_conf["int8_block_size"] = args.block_size
    export_config = ExportConfig.model_validate(export_conf)
    scoring = ScoringConfig.model_validate(conf["scoring"])

    dataset = prepared_dataset(store_root, conf)
    rows = read_split(dataset["uri"], "test") + read_split(dataset["uri"], "validation")
    rows = rows[: args.rows] if args.rows else rows
    with tempfile.TemporaryDirectory(prefix="bench-export-") as scratch:
        work = Path(scratch)
        merged = fine_tuned(store_root, conf, dataset, args.fine_tune_steps, work, entry)
        started = time.perf_counter()
        exported = export_formats(
            merged, work / "export", ["onnx", "onnx-int8"], export_config, dataset=dataset
        )
        export_seconds = time.perf_counter() - started
        int8 = exported["formats"]["onnx-int8"]
        log(f"exported in {export_seconds:.0f} s; INT8 kept {int8['kept']}: {int8['reason']}")

        tokenizer = apply_tokenizer_overrides(AutoTokenizer.from_pretrained(merged), entry)
        candidates = {
            "pytorch fp32": AutoModelForCausalLM.from_pretrained(merged, dtype=torch.float32).eval(),
            "onnx fp32": ORTModelForCausalLM.from_pretrained(work / "export" / "onnx"),
            "onnx int8": ORTModelForCausalLM.from_pretrained(work / "export" / "onnx-int8"),
        }
        sizes = {
            "pytorch fp32": weights_size(merged),
            "onnx fp32": exported["formats"]["onnx"]["size_bytes"],
            "onnx int8": int8["size_bytes"],
        }
        vocab = candidates["pytorch fp32"].config.vocab_size
        log(f"latency: {args.runs} rounds of batch 1 x {TOKENS} tokens, models interleaved")
        latency = interleaved_latency(candidates, vocab, args.runs)
        scores = {}
        for name, model in candidates.items():
            log(f"scoring {name} on {len(rows)} held-out rows")
            scores[name] = answer_and_score(model, tokenizer, rows, scoring)[0]

        fp16 = None
        if cuda_ready():
            log("CUDA: exporting fp16 and timing it against fp32 PyTorch on the GPU")
            fp16_dir = export_formats(merged, work / "export", ["onnx-fp16"], export_config)["formats"][
                "onnx-fp16"
            ]
            gpu = {
                "pytorch fp32 (cuda)": candidates["pytorch fp32"].to("cuda"),
                "onnx fp16 (cuda)": ORTModelForCausalLM.from_pretrained(
                    fp16_dir["path"], provider="CUDAExecutionProvider"
                ),
            }
            fp16 = interleaved_latency(gpu, vocab, args.runs, device="cuda")
            fp16["size_bytes"] = fp16_dir["size_bytes"]

    metric = scoring.primary
    base = latency["pytorch fp32"]["p50_ms"]
    tuned = f"LoRA {args.fine_tune_steps} steps" if args.fine_tune_steps else "the untouched base"
    print(f"demo model: {entry.name} ({tuned})")
    print(
        f"held-out rows: {len(rows)}; batch 1, {TOKENS} tokens, {args.runs} runs, {os.cpu_count()} CPU cores"
    )
    header = f"{'model':<14} {'size MB':>9} {'size x':>7} {'p50 ms':>8} {'p95 ms':>8} {'p50 x':>6}"
    header += "".join(f" {name:>12}" for name in scoring.metrics)
    print(header)
    for name in candidates:
        line = (
            f"{name:<14} {sizes[name] / 1e6:>9.1f} {sizes[name] / sizes['pytorch fp32']:>7.3f} "
            f"{latency[name]['p50_ms']:>8.1f} {latency[name]['p95_ms']:>8.1f} "
            f"{latency[name]['p50_ms'] / base:>6.3f}"
        )
        line += "".join(f" {scores[name][m]:>12.4f}" for m in scoring.metrics)
        print(line)
    if fp16:
        cuda_base = fp16["pytorch fp32 (cuda)"]["p50_ms"]
        for name in ("pytorch fp32 (cuda)", "onnx fp16 (cuda)"):
            print(
                f"{name:<20} p50 {fp16[name]['p50_ms']:.2f} ms, p95 {fp16[name]['p95_ms']:.2f} ms, "
                f"x{fp16[name]['p50_ms'] / cuda_base:.3f}"
            )
    else:
        print("fp16 on CUDA: not measured (no CUDA device or no onnxruntime CUDA provider here)")
    print(f"INT8 kept: {int8['kept']} ({int8['reason']}); export took {export_seconds:.0f} s")

    ratio = latency["onnx int8"]["p50_ms"] / base
    size_ratio = sizes["onnx int8"] / sizes["pytorch fp32"]
    drop = round(scores["pytorch fp32"][metric] - scores["onnx int8"][metric], 4)
    fp16_ratio = fp16["onnx fp16 (cuda)"]["p50_ms"] / fp16["pytorch fp32 (cuda)"]["p50_ms"] if fp16 else None
    print(
        f"ratios: int8 latency {ratio:.3f} (target <= {TARGET_LATENCY}), size {size_ratio:.3f} "
        f"(<= {TARGET_SIZE}), {metric} drop {drop:.4f} (<= {TARGET_DROP})"
        + (f", fp16 cuda latency {fp16_ratio:.3f} (<= {TARGET_FP16})" if fp16_ratio is not None else "")
    )
    passed = ratio <= TARGET_LATENCY and size_ratio <= TARGET_SIZE and drop <= TARGET_DROP
    if fp16_ratio is not None:
        passed = passed and fp16_ratio <= TARGET_FP16
    summary = {
        "metric": "int8 onnx latency / fp32 pytorch (cpu, batch 1, 128 tokens)",
        "value": latency["onnx int8"]["p50_ms"],
        "baseline": base,
        "ratio": round(ratio, 4),
        "target": TARGET_LATENCY,
        "size_ratio": round(size_ratio, 4),
        "size_target": TARGET_SIZE,
        "metric_name": metric,
        "metric_drop": drop,
        "metric_drop_target": TARGET_DROP,
        "fp16_cuda_ratio": round(fp16_ratio, 4) if fp16_ratio is not None else None,
        "fp16_cuda_target": TARGET_FP16,
        "int8_kept": int8["kept"],
        "rows": len(rows),
        "passed": passed,
    }
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
