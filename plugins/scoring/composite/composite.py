"""DataTunerX's composite score: 0.75 * ROUGE-L + 0.25 * BLEU, both from the modules beside this one (0-1)."""

from __future__ import annotations

import datasets
import evaluate

ROUGE_L_WEIGHT = 0.75
BLEU_WEIGHT = 0.25

_DESCRIPTION = """
One number that weighs answer overlap (ROUGE-L F-measure, per row, averaged) three times as much as
n-gram precision (corpus BLEU / 100), the weighting DataTunerX ranks fine-tuned models by. Both parts
are computed by tunerflow's `rouge_l` and `bleu` modules, so Chinese text is handled the same way
(per-character ROUGE-L, sacrebleu's `zh` tokenizer).
"""

_KWARGS_DESCRIPTION = """
Args:
    predictions (list of str): the generated answers.
    references (list of str): one reference answer per prediction.
Returns:
    composite (float, 0-1): 0.75 * rouge_l + 0.25 * bleu.
Examples:
    >>> metric = evaluate.load("plugins/scoring/composite")
    >>> metric.compute(predictions=["the cat sat on the mat"], references=["the cat sat on the mat today"])
    {'composite': 0.903928...}
"""


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class Composite(evaluate.Metric):
    def _info(self) -> evaluate.MetricInfo:
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation="",
            inputs_description=_KWARGS_DESCRIPTION,
            features=datasets.Features(
                {"predictions": datasets.Value("string"), "references": datasets.Value("string")}
            ),
            reference_urls=["https://github.com/DataTunerX/datatunerx"],
        )

    def _compute(self, predictions: list[str], references: list[str]) -> dict[str, float]:
        # evaluate copies only this file into its module cache, so the sibling modules cannot be
        # imported relatively; tunerflow's loader finds and caches them by name instead.
        from tasks.scoring.metrics import compute

        rouge_l = compute("rouge_l", predictions, references)
        bleu = compute("bleu", predictions, references)
        return {"composite": ROUGE_L_WEIGHT * rouge_l + BLEU_WEIGHT * bleu}
