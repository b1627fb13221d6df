"""Step: score one job (or an untouched base model) on the test split. `python -m tasks.evaluate --job ...`

Every job is scored by the same code on the same rows, so the leaderboard compares like with like.
"""

from __future__ import annotations

import json
import logging
import tempfile
from pathlib import Path
from typing import Any

from tasks.config.catalog import CatalogEntry
from tasks.config.scoring import ScoringConfig
from tasks.contracts.evaluate import EvaluateResult, EvaluateSpec, QuantizedScores, TrainedWeights
from tasks.contracts.prepare import PreparedDataset
from tasks.contracts.train import TrainResult
from tasks.exporting.export_step import export_formats
from tasks.runtime.errors import StepError
from tasks.scoring.generation import conversation_of, decoding, generate, prompt_and_reference, render_prompts
from tasks.scoring.metrics import loss_scores, needs_loss, row_scores, score_answers
from tasks.scoring.vision_scoring import load_scored_model, score_vision
from tasks.storage import store
from tasks.training.base_models import load_model, load_tokenizer
from tasks.training.trainer import read_split

log = logging.getLogger("tunerflow.evaluate")


def eval_rows(
    dataset: PreparedDataset | dict[str, Any], max_samples: int | None
) -> tuple[str, list[dict[str, Any]]]:
    """The test split, or the validation split when the ratios left no test rows (e.g. `98,2,0`).
    `dataset` is a prepared dataset: a job's own, or the experiment's eval set (`EvaluateSpec.scored_on`)."""
    dataset = PreparedDataset.model_validate(dataset)
    for split in ("test", "validation"):
        if dataset.counts.get(split):
            # An unpaired (KTO) row's answer is a reference only when it is a good one.
            rows = [row for row in read_split(dataset.uri, split) if row.get("label", True) is not False]
            return split, rows[:max_samples] if max_samples else rows
    raise ValueError(f"dataset '{dataset.name}' has no test or validation rows to score on")


def answer_loss(model: Any, tokenizer: Any, rows: list[dict[str, Any]], batch_size: int) -> float:
    """Mean cross-entropy over the answer tokens only (the SFT objective), on held-out rows."""
    import torch

    total, count = 0.0, 0
    for row in rows:
        conversation, _ = prompt_and_reference(row)
        prompt = render_prompts(tokenizer, [conversation])[0]
        full = tokenizer.apply_chat_template(conversation_of(row), tokenize=False)
        prompt_ids = tokenizer(prompt, add_special_tokens=False)["input_ids"]
        ids = tokenizer(full, add_special_tokens=False, return_tensors="pt")["input_ids"]
        labels = ids.clone()
        labels[:, : len(prompt_ids)] = -100
        answer_tokens = int((labels != -100).sum())
        if not answer_tokens:
            continue
        with torch.inference_mode():
            loss = model(input_ids=ids, labels=labels).loss
        total += float(loss) * answer_tokens
        count += answer_tokens
    return total / max(count, 1)


def answer_and_score(
    model: Any, tokenizer: Any, rows: list[dict[str, Any]], scoring: ScoringConfig
) -> tuple[dict[str, float], list[str], dict[str, float]]:
    """Greedy answers to held-out rows and the text metrics (loss metrics are the caller's): one code path
    for every model and export."""
    conversations, references = zip(*(prompt_and_reference(row) for row in rows), strict=True)
    predictions, stats = generate(
        model,
        tokenizer,
        render_prompts(tokenizer, conversations),
        scoring.max_new_tokens,
        scoring.batch_size,
        decoding(scoring.temperature, scoring.top_p),
        scoring.seed,
    )
    return score_answers(scoring, predictions, conversations, references), list(predictions), stats


def write_predictions(
    uri: str, rows: list[dict[str, Any]], predictions: list[str], metrics: list[str]
) -> None:
    """One line per row: its id, the answer, the reference and the answer's own `scores` on each of
    `metrics` that can be scored per row (`tasks.scoring.metrics.row_scores`; not the judge's)."""
    references = [prompt_and_reference(row)[1] for row in rows]
    scores = row_scores(metrics, predictions, references)
    with open(store.local_file(uri), "w") as handle:
        for row, prediction, reference, row_score in zip(rows, predictions, references, scores, strict=True):
            line = {"id": row["id"], "prediction": prediction, "reference": reference, "scores": row_score}
            handle.write(json.dumps(line) + "\n")


def quantized_scores(
    model: Any, tokenizer: Any, rows: list[dict[str, Any]], job: EvaluateSpec
) -> QuantizedScores:
    """The job as it would be deployed (`scoring.rank_on`): exported and quantized the way the winner's
    export will be (the run's export settings), then scored on the same rows by the same code."""
    from optimum.onnxruntime import ORTModelForCausalLM

    scoring = job.scoring
    fmt = scoring.rank_on
    with tempfile.TemporaryDirectory(prefix=".quantized-", dir=store.local_dir(job.output)) as scratch:
        work = Path(scratch)
        merged = work / "merged"
        model.save_pretrained(merged, safe_serialization=True)
        tokenizer.save_pretrained(merged)
        # The job's own training rows calibrate its export, as the winner's export step does.
        config = job.export_config.model_dump(mode="json") if job.export_config else {}
        dataset = job.dataset.model_dump(mode="json")
        exported = export_formats(merged, work, [fmt], config, dataset=dataset)["formats"][fmt]
        deployed = ORTModelForCausalLM.from_pretrained(work / fmt)
        metrics, predictions, stats = answer_and_score(deployed, tokenizer, rows, scoring)
    write_predictions(store.join(job.output, f"predictions-{fmt}.jsonl"), rows, predictions, scoring.metrics)
    details = {k: v for k, v in exported.items() if k not in ("uri", "path")}
    return QuantizedScores(format=fmt, metrics=metrics, generation=stats, **details)


def trained_weights(job: EvaluateSpec) -> TrainedWeights:
    """The weights scored over the base model: the job's committed training, or those the spec gives."""
    if not job.train_output:
        return job.trained or TrainedWeights()
    committed = store.committed_result(job.train_output)
    if committed is None:
        raise StepError(f"{job.label}: training did not commit a model, so there is nothing to score")
    result = TrainResult.load(committed, f"the training committed at {job.train_output}")
    return TrainedWeights(model_uri=result.model_uri, adapter_uri=result.adapter_uri)


def evaluate(job: EvaluateSpec) -> EvaluateResult:
    """Generate greedy answers for the held-out rows and compute the configured metrics."""
    scoring = job.scoring
    trained = trained_weights(job)
    root = job.store_root
    model_entry = job.model
    if trained.model_uri:  # a fully fine-tuned model replaces the base weights
        replaced = {"source": {"path": trained.model_uri}, "kind": "uri"}
        model_entry = CatalogEntry.model_validate({**model_entry.model_dump(), **replaced})
    adapter = trained.adapter_uri
    split, rows = eval_rows(job.scored_on, scoring.max_samples)
    vision = PreparedDataset.model_validate(job.scored_on).kind == "vision"
    if vision:  # images with the prompts: the processor's path (no ONNX/INT8 ranking: refused at validation)
        model, processor = load_scored_model(model_entry, root, adapter)
        metrics, predictions, stats = score_vision(model, processor, rows, scoring)
    else:
        model = load_model(model_entry, root, adapter_dir=str(store.fetch(adapter)) if adapter else None)
        tokenizer = load_tokenizer(model_entry, root)
        metrics, predictions, stats = answer_and_score(model, tokenizer, rows, scoring)
        if needs_loss(scoring.metrics):  # eval_loss and perplexity share one pass over the rows
            loss = answer_loss(model, tokenizer, rows, scoring.batch_size)
            metrics.update(loss_scores(scoring.metrics, loss))
    metrics = {name: metrics[name] for name in scoring.metrics}  # in the conf's order
    write_predictions(store.join(job.output, "predictions.jsonl"), rows, predictions, scoring.metrics)
    quantized = None
    if scoring.rank_on != "pytorch" and not job.reference and not vision:
        quantized = quantized_scores(model, tokenizer, rows, job)
        log.info("%s as %s: %s", job.label, scoring.rank_on, quantized.metrics)
    log.info(
        "%s on %d %s rows: %s (%.1f generated tokens/s)",
        job.label,
        len(rows),
        split,
        metrics,
        stats["tokens_per_s"],
    )
    return EvaluateResult(
        job_id=job.job_id,
        label=job.label,
        reference=job.reference,
        split=split,
        scored_on=job.scored_on.name,
        n=len(rows),
        metrics=metrics,
        generation=stats,
        **({"quantized": quantized} if quantized else {}),
    )
