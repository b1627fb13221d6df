"""Token F1 after SQuAD-style normalisation: word overlap of answer and reference, mean over rows (0-1)."""

from __future__ import annotations

import re
import string
from collections import Counter

import datasets
import evaluate

_DESCRIPTION = """
For each prediction, the harmonic mean of precision (shared words / words in the prediction) and recall
(shared words / words in the reference), counting repeated words as often as both sides have them,
after SQuAD-style normalisation (lower case, no punctuation, no articles a/an/the). Averaged over the
rows. Two empty answers score 1, one empty answer scores 0.
"""

_CITATION = """
@inproceedings{rajpurkar-etal-2016-squad,
    title = "{SQ}u{AD}: 100,000+ Questions for Machine Comprehension of Text",
    author = "Rajpurkar, Pranav and Zhang, Jian and Lopyrev, Konstantin and Liang, Percy",
    booktitle = "Proceedings of the 2016 Conference on Empirical Methods in Natural Language Processing",
    year = "2016",
    pages = "2383--2392",
}
"""

_KWARGS_DESCRIPTION = """
Args:
    predictions (list of str): the generated answers.
    references (list of str): one reference answer per prediction.
Returns:
    token_f1 (float, 0-1): the mean per-row F1 of the normalised words.
Examples:
    >>> metric = evaluate.load("plugins/scoring/token_f1")
    >>> metric.compute(predictions=["the cat sat"], references=["a cat sat down"])
    {'token_f1': 0.8}
"""

_PUNCT = re.compile(f"[{re.escape(string.punctuation)}]")


def normalise_answer(text: str) -> str:
    """SQuAD-style: lower case, no punctuation, no articles, single spaces."""
    text = _PUNCT.sub(" ", text.lower())
    text = re.sub(r"\b(a|an|the)\b", " ", text)
    return " ".join(text.split())


def f1(prediction: str, reference: str) -> float:
    pred, ref = normalise_answer(prediction).split(), normalise_answer(reference).split()
    if not pred or not ref:
        return float(pred == ref)
    common = sum((Counter(pred) & Counter(ref)).values())
    if common == 0:
        return 0.0
    precision, recall = common / len(pred), common / len(ref)
    return 2 * precision * recall / (precision + recall)


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class TokenF1(evaluate.Metric):
    def _info(self) -> evaluate.MetricInfo:
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation=_CITATION,
            inputs_description=_KWARGS_DESCRIPTION,
            features=datasets.Features(
                {"predictions": datasets.Value("string"), "references": datasets.Value("string")}
            ),
            reference_urls=["https://rajpurkar.github.io/SQuAD-explorer/"],
        )

    def _compute(self, predictions: list[str], references: list[str]) -> dict[str, float]:
        scores = [f1(p, r) for p, r in zip(predictions, references, strict=True)]
        return {"token_f1": sum(scores) / max(len(scores), 1)}
