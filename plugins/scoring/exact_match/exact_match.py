"""Exact match after SQuAD-style normalisation: the share of answers equal to their reference (0-1)."""

from __future__ import annotations

import re
import string

import datasets
import evaluate

_DESCRIPTION = """
The share of predictions that equal their reference once both are normalised the way the SQuAD
evaluation script does: lower case, punctuation removed, the articles a/an/the removed, whitespace
collapsed. 1.0 means every answer matched.
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
    exact_match (float, 0-1): the share of normalised predictions equal to their normalised reference.
Examples:
    >>> metric = evaluate.load("plugins/scoring/exact_match")
    >>> metric.compute(predictions=["The Cat!"], references=["cat"])
    {'exact_match': 1.0}
"""

_PUNCT = re.compile(f"[{re.escape(string.punctuation)}]")


def normalise_answer(text: str) -> str:
    """SQuAD-style: lower case, no punctuation, no articles, single spaces."""
    text = _PUNCT.sub(" ", text.lower())
    text = re.sub(r"\b(a|an|the)\b", " ", text)
    return " ".join(text.split())


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class ExactMatch(evaluate.Metric):
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
        hits = sum(
            normalise_answer(p) == normalise_answer(r) for p, r in zip(predictions, references, strict=True)
        )
        return {"exact_match": hits / max(len(predictions), 1)}
