"""Step: check every exported format against the PyTorch model it came from.
`python -m tasks.check_export --job <json-or-uri>`

Per format: logits parity and greedy next-token agreement on fixed prompts, the primary metric on the
test split (drop against the PyTorch winner), batch-1 forward latency on the device the format targets
(CPU for onnx and onnx-int8, CUDA for onnx-fp16, each against PyTorch fp32 on the same device) and file
size. fp32 ONNX must match PyTorch numerically (max_logit_diff), fp16 within a looser bound
(fp16_max_logit_diff); INT8 cannot match logits by construction, so its greedy tokens must agree with
PyTorch's on most prompt positions (int8_min_agreement), which refuses an INT8 graph of the wrong or broken
weights even when the metric cannot tell. The metric drop is gated for every format. Writes `checks.json`
before a failing gate raises, so the numbers behind a refusal are kept. The `gguf` format is checked per
file by `tasks.exporting.gguf_checks` (entries `gguf-f16`, `gguf-q8_0`).
"""

from __future__ import annotations

import logging
import time
from typing import Any

from tasks.config.export import ExportConfig
from tasks.config.scoring import ScoringConfig
from tasks.contracts.export import CheckExportResult, CheckExportSpec, ExportResult
from tasks.exporting.gguf_checks import check_gguf, greedy_tokens
from tasks.exporting.gguf_export import GGUF
from tasks.exporting.onnx_fp import FP16, FP32
from tasks.exporting.parity import (
    drop_problem,
    fixed_inputs,
    metric_drop,
    parity,
    position_problem,
    prompt_logits,
)
from tasks.runtime.errors import StepError
from tasks.scoring.evaluation import answer_and_score, eval_rows
from tasks.scoring.plugins import is_loss_metric
from tasks.storage import store
from tasks.training.base_models import apply_tokenizer_overrides

log = logging.getLogger("tunerflow.check_export")

LATENCY_TOKENS = 128
LATENCY_WARMUP = 3
LATENCY_RUNS = 20
CUDA_FORMATS = (FP16,)


def latency(model: Any, config: Any, device: str = "cpu", runs: int = LATENCY_RUNS) -> dict[str, Any]:
    """Batch-1 forward pass over a fixed random sequence, in milliseconds, on `device` (inputs placed
    there; CUDA work is waited for before the clock stops)."""
    import numpy as np  # with torch: only in the step
    import torch

    length = min(LATENCY_TOKENS, getattr(config, "max_position_embeddings", LATENCY_TOKENS))
    generator = torch.Generator().manual_seed(0)
    input_ids = torch.randint(0, config.vocab_size, (1, length), generator=generator).to(device)
    batch = {"input_ids": input_ids, "attention_mask": torch.ones_like(input_ids)}
    timings = []
    with torch.inference_mode():
        for run in range(LATENCY_WARMUP + runs):
            started = time.perf_counter()
            model(**batch)
            if device.startswith("cuda"):
                torch.cuda.synchronize()
            if run >= LATENCY_WARMUP:
                timings.append((time.perf_counter() - started) * 1000)
    p50, p95 = np.percentile(timings, [50, 95])
    return {
        "device": device,
        "tokens": length,
        "p50_ms": round(float(p50), 3),
        "p95_ms": round(float(p95), 3),
    }


def format_device(fmt: str) -> str:
    return "cuda" if fmt in CUDA_FORMATS else "cpu"


def load_format(directory: Any, fmt: str) -> Any:
    """An exported format on the execution provider it was built for."""
    from optimum.onnxruntime import ORTModelForCausalLM  # heavy: only in the step

    if format_device(fmt) == "cuda":
        return ORTModelForCausalLM.from_pretrained(directory, provider="CUDAExecutionProvider")
    return ORTModelForCausalLM.from_pretrained(directory)


def gated_metric(scoring: ScoringConfig) -> str | None:
    """The primary metric, or when that is a loss metric (eval_loss, perplexity: not measured on generated
    answers, which is what an export changes) the first text metric."""
    if not is_loss_metric(scoring.primary):
        return scoring.primary
    return next((name for name in scoring.metrics if not is_loss_metric(name)), None)


def gate(fmt: str, checks: dict[str, Any], limits: ExportConfig, metric: str | None) -> list[str]:
    problems: list[str | None] = []
    if fmt in (FP32, FP16):
        max_diff = limits.max_logit_diff if fmt == FP32 else limits.fp16_max_logit_diff
        if checks["max_logit_diff"] > max_diff:
            problems.append(f"{fmt}: max_logit_diff {checks['max_logit_diff']:.4g} > {max_diff}")
        if checks["next_token_agreement"] < limits.min_next_token_agreement:
            problems.append(
                f"{fmt}: next_token_agreement {checks['next_token_agreement']:.4g} "
                f"< {limits.min_next_token_agreement}"
            )
    else:
        problems.append(position_problem(fmt, checks, limits.int8_min_agreement))
    problems.append(drop_problem(fmt, checks, limits.max_metric_drop, metric))
    return [problem for problem in problems if problem]


def _export_of(job: CheckExportSpec) -> ExportResult:
    """The export to check: given in the spec, or what the export step committed."""
    if job.export is not None:
        return job.export
    committed = store.committed_result(job.export_output)
    if committed is None:
        raise StepError("check_export: the export step has not committed its output; nothing to check")
    return ExportResult.load(committed, f"the export committed at {job.export_output}")


def check_export(job: CheckExportSpec) -> CheckExportResult:
    """Compare every exported format with the merged PyTorch model and gate the results."""
    import torch  # with transformers: only in the step
    from transformers import AutoModelForCausalLM, AutoTokenizer

    scoring, limits = job.scoring, job.export_config
    exported = _export_of(job)
    metric = gated_metric(scoring)
    merged = store.fetch(exported.merged_uri)

    tokenizer = apply_tokenizer_overrides(AutoTokenizer.from_pretrained(merged), job.model)
    reference_model = AutoModelForCausalLM.from_pretrained(
        merged, dtype=torch.float32, use_safetensors=True
    ).eval()
    inputs = fixed_inputs(tokenizer)
    reference_logits = prompt_logits(reference_model, inputs)
    _, rows = eval_rows(job.dataset, scoring.max_samples)
    reference_metrics = dict(job.reference_metrics)
    if metric and metric not in reference_metrics:
        log.info("no reference %s given: scoring the PyTorch model on the same rows", metric)
        reference_metrics.update(answer_and_score(reference_model, tokenizer, rows, scoring)[0])
    pytorch = {
        "size_bytes": exported.pytorch_size_bytes,
        "latency": latency(reference_model, reference_model.config),
    }
    # GGUF files are also compared on greedy generation (tasks.exporting.gguf_checks).
    reference_greedy = greedy_tokens(reference_model, inputs) if GGUF in exported.formats else []
    if any(format_device(fmt) == "cuda" for fmt in exported.formats):
        # fp16 on CUDA is compared with fp32 PyTorch on the same GPU, not with a CPU number.
        pytorch["latency_cuda"] = latency(reference_model.to("cuda"), reference_model.config, "cuda")
    del reference_model

    formats: dict[str, dict[str, Any]] = {}
    for fmt, info in exported.formats.items():
        if fmt == GGUF:
            formats.update(
                check_gguf(
                    info,
                    store.fetch(info.uri),
                    tokenizer=tokenizer,
                    inputs=inputs,
                    reference_logits=reference_logits,
                    reference_greedy=reference_greedy,
                    rows=rows,
                    scoring=scoring,
                    metric=metric,
                    reference_metrics=reference_metrics,
                    limits=limits,
                    pytorch_size=pytorch["size_bytes"],
                )
            )
            continue
        log.info("checking %s", fmt)
        device = format_device(fmt)
        model = load_format(store.fetch(info.uri), fmt)
        checks: dict[str, Any] = {"uri": info.uri, "size_bytes": info.size_bytes}
        checks["size_ratio"] = round(info.size_bytes / pytorch["size_bytes"], 4)
        checks.update(parity(reference_logits, prompt_logits(model, inputs)))
        checks["metrics"] = answer_and_score(model, tokenizer, rows, scoring)[0] if metric else {}
        checks["metric_drop"] = (
            metric_drop(metric, reference_metrics[metric], checks["metrics"][metric]) if metric else None
        )
        checks["latency"] = latency(model, model.config, device)
        baseline = pytorch["latency_cuda" if device == "cuda" else "latency"]
        checks["speedup_p50"] = round(baseline["p50_ms"] / checks["latency"]["p50_ms"], 3)
        checks["problems"] = gate(fmt, checks, limits, metric)
        checks["passed"] = not checks["problems"]
        formats[fmt] = checks

    result = CheckExportResult(
        gated_metric=metric,
        reference_metrics=reference_metrics,
        test_rows=len(rows),
        pytorch=pytorch,
        formats=formats,
        passed=all(checks["passed"] for checks in formats.values()),
    )
    store.write_json(store.join(job.output, "checks.json"), result.model_dump(mode="json"))
    problems = [problem for checks in formats.values() for problem in checks["problems"]]
    if problems:
        raise StepError("export checks failed: " + "; ".join(problems))
    return result
