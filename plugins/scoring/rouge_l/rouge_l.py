"""ROUGE-L F-measure (rouge-score), with Chinese and Japanese text split per character (0-1)."""

from __future__ import annotations

import re

import datasets
import evaluate
from rouge_score import rouge_scorer

_DESCRIPTION = """
ROUGE-L: the longest common subsequence (LCS) of the prediction's and the reference's tokens gives
precision LCS / prediction tokens and recall LCS / reference tokens; the score is their F-measure
2PR / (P + R), computed per row with Google's rouge-score package and averaged over the rows.

Tokens: rouge-score's default tokenizer keeps only the ASCII letters and digits, so Chinese text has no
tokens at all and scores 0. Here every Chinese or Japanese character (CJK ideographs, hiragana,
katakana) is a token of its own, as in character-level Chinese ROUGE, and every other run of letters or
digits (any script, lower-cased) is one word. For ASCII text the tokens, and so the scores, are the
same as rouge-score's default (no stemming).
"""

_CITATION = """
@inproceedings{lin-2004-rouge,
    title = "{ROUGE}: A Package for Automatic Evaluation of Summaries",
    author = "Lin, Chin-Yew",
    booktitle = "Text Summarization Branches Out",
    year = "2004",
    publisher = "Association for Computational Linguistics",
    pages = "74--81",
}
"""

_KWARGS_DESCRIPTION = """
Args:
    predictions (list of str): the generated answers.
    references (list of str): one reference answer per prediction.
Returns:
    rouge_l (float, 0-1): the mean per-row ROUGE-L F-measure.
Examples:
    >>> metric = evaluate.load("plugins/scoring/rouge_l")
    >>> metric.compute(predictions=["猫坐在垫子上"], references=["一只猫坐在垫子上"])
    {'rouge_l': 0.857142...}
"""

# CJK ideographs (with extension A, compatibility, and the supplementary planes), hiragana, katakana.
CJK = "\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\U00020000-\U0003134f"
_TOKEN = re.compile(f"[{CJK}]|[^\\W_{CJK}]+")


class CjkTokenizer:
    """rouge-score tokenizer: one token per CJK character, one per run of other letters or digits."""

    def tokenize(self, text: str) -> list[str]:
        return _TOKEN.findall(text.lower())


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class RougeL(evaluate.Metric):
    def _info(self) -> evaluate.MetricInfo:
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation=_CITATION,
            inputs_description=_KWARGS_DESCRIPTION,
            features=datasets.Features(
                {"predictions": datasets.Value("string"), "references": datasets.Value("string")}
            ),
            codebase_urls=["https://github.com/google-research/google-research/tree/master/rouge"],
            reference_urls=["https://aclanthology.org/W04-1013/"],
        )

    def _compute(self, predictions: list[str], references: list[str]) -> dict[str, float]:
        scorer = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=False, tokenizer=CjkTokenizer())
        pairs = zip(predictions, references, strict=True)
        scores = [scorer.score(reference, prediction)["rougeL"].fmeasure for prediction, reference in pairs]
        return {"rouge_l": sum(scores) / max(len(scores), 1)}
