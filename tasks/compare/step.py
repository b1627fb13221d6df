"""The compare_models step: every model, one after another (so none slows another's timing), loaded
once and asked every prompt in turn; one column of answers per model, written to `results.json`.

A model that cannot be loaded or reached gets its column with the reason, and the others still run; the
step fails only when no model answered at all.
"""

from __future__ import annotations

import gc
import json
import logging
import time
from datetime import UTC, datetime

from tasks.compare import local_models
from tasks.compare.endpoint import Endpoint
from tasks.contracts.compare import (
    RESULTS_FILE,
    Answer,
    CompareModel,
    ComparePrompt,
    CompareResult,
    CompareSpec,
    EvalSetRows,
    ModelAnswers,
)
from tasks.runtime.errors import StepError
from tasks.scoring.evaluation import eval_rows
from tasks.scoring.generation import prompt_and_reference
from tasks.storage import store

log = logging.getLogger("tunerflow.compare")


def eval_prompts(eval_set: EvalSetRows | None) -> list[ComparePrompt]:
    """The eval set's first `limit` held-out rows as prompts, with their reference answers."""
    if eval_set is None:
        return []
    _, rows = eval_rows(eval_set.dataset, eval_set.limit)
    prompts = []
    for row in rows:
        messages, reference = prompt_and_reference(row)
        row_id = str(row.get("id", len(prompts)))
        prompts.append(ComparePrompt(id=row_id, messages=messages, reference=reference))
    return prompts


def _free() -> None:
    """Release the last model before the next one loads, so two never share the memory or the device."""
    import torch

    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def run_model(model: CompareModel, spec: CompareSpec, prompts: list[ComparePrompt]) -> ModelAnswers:
    temperature = model.temperature if model.temperature is not None else spec.generation.temperature
    column = {"label": model.label, "source": model.source, "kind": model.kind, "temperature": temperature}
    started = time.perf_counter()
    try:
        runner = Endpoint(model) if model.kind == "endpoint" else local_models.load(model, spec.store_root)
    except Exception as error:  # this column says why; the other models still run
        log.error("%s could not be loaded: %s", model.label, error)
        return ModelAnswers(**column, error=f"{type(error).__name__}: {error}")
    load_s = None if model.kind == "endpoint" else round(time.perf_counter() - started, 3)
    answers = []
    for prompt in prompts:
        try:
            answer = runner.answer(prompt, spec.generation, temperature)
        except Exception as error:  # one prompt's failure (a timeout, a refused request) is its cell's
            answer = Answer(prompt_id=prompt.id, error=f"{type(error).__name__}: {error}")
        log.info(
            "%s | %s | ttft %s s | %s tok/s | %s s | %s",
            model.label,
            prompt.id,
            answer.ttft_s,
            answer.tokens_per_s,
            answer.latency_s,
            answer.error or f"{answer.prompt_tokens} + {answer.completion_tokens} tokens",
        )
        answers.append(answer)
    del runner
    _free()
    return ModelAnswers(**column, load_s=load_s, answers=answers)


def device() -> str:
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def compare_models(spec: CompareSpec) -> CompareResult:
    """Ask every model every prompt and record each answer with its tokens, TTFT, tokens/s and latency."""
    prompts = spec.prompts + eval_prompts(spec.eval_set)
    if not prompts:
        raise StepError("nothing to ask: the spec has no prompts and its eval set no rows")
    columns = [run_model(model, spec, prompts) for model in spec.models]
    if not any(answer.error is None for column in columns for answer in column.answers):
        reasons = "; ".join(f"{c.label}: {c.error or c.answers[0].error}" for c in columns)
        raise StepError(f"no model answered: {reasons}")
    result = CompareResult(
        run_id=spec.run_id,
        prompts=prompts,
        models=columns,
        generation=spec.generation,
        device=device(),
        finished_at=datetime.now(UTC).isoformat(timespec="seconds"),
    )
    with open(store.local_file(store.join(spec.output, RESULTS_FILE)), "w") as handle:
        json.dump(result.model_dump(mode="json"), handle, indent=2, ensure_ascii=False)
    return result
