"""check_export for the `gguf` format: each GGUF file loaded back with transformers' GGUF loader and
compared with the merged PyTorch model, as one result entry per file (`gguf-f16`, `gguf-q8_0`).

Per file: logits parity on the fixed prompts (`tasks.exporting.checks.parity`), greedy agreement (the
share of identical tokens, position by position, when both models generate 16 tokens greedily from each
fixed prompt), the tokenizer read back from the file against the merged one on the fixed prompts, the
gated metric on the test split, and the file size. Latency is not measured: transformers dequantizes a
GGUF file to a PyTorch model, so its speed says nothing of llama.cpp's or Ollama's.

Gates: f16 by `gguf_f16_max_logit_diff`; q8_0 cannot match logits, so by `int8_min_agreement` on prompt
positions like INT8; both by `gguf_min_greedy_agreement`, an identical tokenizer and `max_metric_drop`.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from tasks.config.export import ExportConfig
from tasks.contracts.export import ExportedFormat
from tasks.exporting.parity import (
    drop_problem,
    fixed_texts,
    metric_drop,
    parity,
    position_problem,
    prompt_logits,
)
from tasks.scoring.evaluation import answer_and_score

log = logging.getLogger("tunerflow.check_export")

GREEDY_PROMPTS = 12
GREEDY_TOKENS = 16


def greedy_tokens(model: Any, inputs: list[Any]) -> list[list[int]]:
    """GREEDY_TOKENS tokens generated greedily from each of the first GREEDY_PROMPTS inputs (all 12); end of
    sequence is suppressed so that every list has the same length."""
    import torch  # heavy: only in the step

    eos = model.config.eos_token_id
    pad = (eos[0] if isinstance(eos, list) else eos) or 0  # batch 1: never used, but generate wants one
    out = []
    with torch.inference_mode():
        for encoding in inputs[:GREEDY_PROMPTS]:
            generated = model.generate(
                **encoding,
                do_sample=False,
                max_new_tokens=GREEDY_TOKENS,
                min_new_tokens=GREEDY_TOKENS,
                pad_token_id=pad,
            )
            out.append(generated[0, encoding["input_ids"].shape[1] :].tolist())
    return out


def greedy_agreement(reference: list[list[int]], candidate: list[list[int]]) -> float:
    pairs = [
        (r, c) for ref, cand in zip(reference, candidate, strict=True) for r, c in zip(ref, cand, strict=True)
    ]
    return round(sum(r == c for r, c in pairs) / len(pairs), 6) if pairs else 0.0


def tokenizer_agreement(reference: Any, candidate: Any) -> float:
    """Share of the fixed prompts (rendered with the merged tokenizer's chat template) that the file's
    tokenizer encodes to the same ids."""
    texts = fixed_texts(reference)
    same = [
        reference(text, add_special_tokens=False)["input_ids"]
        == candidate(text, add_special_tokens=False)["input_ids"]
        for text in texts
    ]
    return round(sum(same) / len(same), 6)


def gate_gguf(name: str, gguf_type: str, checks: dict[str, Any], limits: ExportConfig, metric: str | None):
    problems: list[str | None] = []
    if gguf_type == "f16" and checks["max_logit_diff"] > limits.gguf_f16_max_logit_diff:
        problems.append(
            f"{name}: max_logit_diff {checks['max_logit_diff']:.4g} > {limits.gguf_f16_max_logit_diff}"
        )
    if gguf_type == "q8_0":
        problems.append(position_problem(name, checks, limits.int8_min_agreement))
    if checks["greedy_agreement"] < limits.gguf_min_greedy_agreement:
        problems.append(
            f"{name}: greedy_agreement {checks['greedy_agreement']:.4g} < {limits.gguf_min_greedy_agreement}"
        )
    if checks["tokenizer_agreement"] < 1:
        problems.append(
            f"{name}: the tokenizer read back from the file encodes {checks['tokenizer_agreement']:.4g} of "
            "the fixed prompts like the merged model's (all must match)"
        )
    problems.append(drop_problem(name, checks, limits.max_metric_drop, metric))
    return [problem for problem in problems if problem]


def check_gguf(
    info: ExportedFormat,
    directory: Path,
    *,
    tokenizer: Any,
    inputs: list[Any],
    reference_logits: list[Any],
    reference_greedy: list[list[int]],
    rows: list[dict[str, Any]],
    scoring: Any,
    metric: str | None,
    reference_metrics: dict[str, Any],
    limits: ExportConfig,
    pytorch_size: int,
) -> dict[str, dict[str, Any]]:
    """One checks entry per GGUF file the export wrote (its `files` detail)."""
    import torch  # heavy: only in the step
    from transformers import AutoModelForCausalLM, AutoTokenizer

    results = {}
    for gguf_type, file_info in (getattr(info, "files", None) or {}).items():
        name = f"gguf-{gguf_type}"
        log.info("checking %s", name)
        file = file_info["file"]
        model = AutoModelForCausalLM.from_pretrained(directory, gguf_file=file, dtype=torch.float32).eval()
        checks: dict[str, Any] = {
            "uri": f"{info.uri.rstrip('/')}/{file}",
            "size_bytes": file_info["size_bytes"],
        }
        checks["size_ratio"] = round(file_info["size_bytes"] / pytorch_size, 4)
        checks.update(parity(reference_logits, prompt_logits(model, inputs)))
        generated = greedy_tokens(model, inputs)
        checks["greedy_agreement"] = greedy_agreement(reference_greedy, generated)
        # How many prompts got all 16 tokens identical: tells one early divergence from many small ones.
        checks["greedy_identical_prompts"] = sum(
            r == g for r, g in zip(reference_greedy, generated, strict=True)
        )
        checks["greedy"] = {"prompts": min(GREEDY_PROMPTS, len(inputs)), "tokens": GREEDY_TOKENS}
        checks["tokenizer_agreement"] = tokenizer_agreement(
            tokenizer, AutoTokenizer.from_pretrained(directory, gguf_file=file)
        )
        checks["metrics"] = answer_and_score(model, tokenizer, rows, scoring)[0] if metric else {}
        checks["metric_drop"] = (
            metric_drop(metric, reference_metrics[metric], checks["metrics"][metric]) if metric else None
        )
        checks["latency"] = None  # see the module docstring
        checks["problems"] = gate_gguf(name, gguf_type, checks, limits, metric)
        checks["passed"] = not checks["problems"]
        results[name] = checks
        del model
    return results
