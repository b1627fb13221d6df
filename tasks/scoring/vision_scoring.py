"""Scoring a vision-language model: the base model (with the job's adapter, or its fully trained weights)
and its processor loaded, each held-out vision row's prompt answered with its images, and the answers
scored by the same metrics as every other job (`tasks.scoring.metrics`)."""

from __future__ import annotations

from typing import Any

from tasks.config.catalog import CatalogEntry
from tasks.config.scoring import ScoringConfig
from tasks.scoring.generation import decoding, prompt_and_reference
from tasks.scoring.metrics import loss_scores, needs_loss, score_answers
from tasks.storage import store
from tasks.training.base_models import weights_location
from tasks.training.vision_inputs import answer_loss, generate_answers, load_processor, load_vision_model


def load_scored_model(entry: CatalogEntry, root: str, adapter_uri: str | None) -> tuple[Any, Any]:
    """(model in eval mode, processor): the base weights, with the adapter on them when there is one."""
    model = load_vision_model(entry, root)
    if adapter_uri:
        # PEFT is loaded only for an adapter.
        from peft import PeftModel

        model = PeftModel.from_pretrained(model, str(store.fetch(adapter_uri)))
    model.eval()
    return model, load_processor(weights_location(entry, root), entry)


def score_vision(
    model: Any, processor: Any, rows: list[dict[str, Any]], scoring: ScoringConfig
) -> tuple[dict[str, float], list[str], dict[str, float]]:
    """(metrics, answers, generation stats) on held-out vision rows; the evaluate step puts the metrics
    in the conf's order."""
    conversations, references = zip(*(prompt_and_reference(row) for row in rows), strict=True)
    predictions, stats = generate_answers(
        model, processor, rows, scoring.max_new_tokens, decoding(scoring.temperature, scoring.top_p)
    )
    metrics = score_answers(scoring, predictions, conversations, references)
    if needs_loss(scoring.metrics):
        metrics.update(loss_scores(scoring.metrics, answer_loss(model, processor, rows)))
    return metrics, predictions, stats
