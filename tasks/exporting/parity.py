"""What every export check compares: the fixed prompts, the logits a model gives on them, how closely
two models' logits and greedy tokens agree, and how much a metric dropped. Shared by the ONNX checks
(`tasks.exporting.checks`) and the GGUF checks (`tasks.exporting.gguf_checks`)."""

from __future__ import annotations

from typing import Any

from tasks.scoring.generation import render_prompts
from tasks.scoring.plugins import lower_is_better

# Varied on purpose (identity, facts, code, arithmetic, another language) so that parity is not
# measured on one kind of text only.
FIXED_PROMPTS = (
    "Who are you?",
    "What is the capital of France?",
    "Write a Python function that reverses a string.",
    "Explain gradient descent in one sentence.",
    "List three colours.",
    "What is 17 times 3?",
    "Translate 'good morning' into German.",
    "Summarise: the cat sat on the mat all afternoon.",
    "Give me a name for a pet turtle.",
    "Why is the sky blue?",
    "Tell me a short joke.",
    "What does ONNX stand for?",
)


def fixed_texts(tokenizer: Any) -> list[str]:
    """The fixed prompts as the model sees them (rendered with its chat template when it has one)."""
    if tokenizer.chat_template:
        return render_prompts(tokenizer, [[{"role": "user", "content": p}] for p in FIXED_PROMPTS])
    return list(FIXED_PROMPTS)


def fixed_inputs(tokenizer: Any) -> list[Any]:
    """One encoding per prompt: batch 1, so that padding plays no part in the comparison."""
    texts = fixed_texts(tokenizer)
    return [
        tokenizer(text, return_tensors="pt", add_special_tokens=False, return_token_type_ids=False)
        for text in texts
    ]


def prompt_logits(model: Any, inputs: list[Any]) -> list[Any]:
    import torch  # heavy: the step imports it, the Airflow worker never

    with torch.inference_mode():
        device = getattr(model, "device", "cpu")
        return [model(**encoding.to(device)).logits[0].float().cpu() for encoding in inputs]


def parity(reference: list[Any], candidate: list[Any]) -> dict[str, float]:
    import torch  # heavy: the step imports it, the Airflow worker never

    diffs = [float((r - c).abs().max()) for r, c in zip(reference, candidate, strict=True)]
    last = [int(r[-1].argmax() == c[-1].argmax()) for r, c in zip(reference, candidate, strict=True)]
    positions = torch.cat(
        [(r.argmax(-1) == c.argmax(-1)).float() for r, c in zip(reference, candidate, strict=True)]
    )
    return {
        "max_logit_diff": round(max(diffs), 6),
        "next_token_agreement": round(sum(last) / len(last), 6),
        # Every prompt position, teacher-forced: a finer-grained view than the last token alone.
        "position_agreement": round(float(positions.mean()), 6),
    }


def metric_drop(metric: str, reference: float, value: float) -> float:
    """How much worse the export scores than PyTorch: a fall, or a rise for a lower-is-better metric."""
    drop = value - reference if lower_is_better(metric) else reference - value
    return round(drop, 6)


def position_problem(name: str, checks: dict[str, Any], min_agreement: float) -> str | None:
    """The gate of a quantized file (ONNX INT8, GGUF q8_0): its greedy tokens at every prompt position must
    mostly be PyTorch's; far fewer means the wrong or broken weights, not rounding."""
    if checks["position_agreement"] >= min_agreement:
        return None
    return (
        f"{name}: position_agreement {checks['position_agreement']:.4g} < {min_agreement} "
        "(its greedy tokens differ from PyTorch's: the wrong or broken weights)"
    )


def drop_problem(name: str, checks: dict[str, Any], max_drop: float, metric: str | None) -> str | None:
    """The gate every format shares: the gated metric may drop at most `max_drop` against PyTorch."""
    drop = checks.get("metric_drop")
    if drop is None or drop <= max_drop:
        return None
    return f"{name}: metric_drop ({metric}) {drop:.4g} > {max_drop}"
