"""Corpus BLEU (sacrebleu) divided by 100, with sacrebleu's `zh` tokenizer for Chinese references (0-1)."""

from __future__ import annotations

import re

import datasets
import evaluate
import sacrebleu

_DESCRIPTION = """
Corpus-level BLEU from sacrebleu with its defaults (4-gram precisions, exponential smoothing, brevity
penalty, one reference per prediction), divided by 100 so that it reads 0-1 like every other metric on
the leaderboard: BLEU = BP * exp(mean over n=1..4 of log p_n), where p_n is the clipped n-gram precision
summed over the corpus and BP = exp(1 - reference length / prediction length) when the predictions are
shorter, else 1.

Tokenizer: sacrebleu's default `13a` splits on spaces and punctuation, which leaves a Chinese sentence
as one token. When more than half of the references' non-space characters are CJK (ideographs, kana),
the `zh` tokenizer is used instead, which splits every Chinese character (the WMT convention for
Chinese). Japanese is better served by `ja-mecab`, which needs MeCab and is not used here.
"""

_CITATION = """
@inproceedings{post-2018-call,
    title = "A Call for Clarity in Reporting {BLEU} Scores",
    author = "Post, Matt",
    booktitle = "Proceedings of the Third Conference on Machine Translation: Research Papers",
    year = "2018",
    publisher = "Association for Computational Linguistics",
    pages = "186--191",
}
@inproceedings{papineni-etal-2002-bleu,
    title = "{B}leu: a Method for Automatic Evaluation of Machine Translation",
    author = "Papineni, Kishore and Roukos, Salim and Ward, Todd and Zhu, Wei-Jing",
    booktitle = "Proceedings of the 40th Annual Meeting of the Association for Computational Linguistics",
    year = "2002",
    pages = "311--318",
}
"""

_KWARGS_DESCRIPTION = """
Args:
    predictions (list of str): the generated answers.
    references (list of str): one reference answer per prediction.
Returns:
    bleu (float, 0-1): sacrebleu's corpus BLEU / 100.
Examples:
    >>> metric = evaluate.load("plugins/scoring/bleu")
    >>> metric.compute(predictions=["the cat sat on the mat"], references=["the cat sat on the mat today"])
    {'bleu': 0.846481...}
"""

# The same characters as the rouge_l module counts as CJK.
_CJK = re.compile("[\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\U00020000-\U0003134f]")


def tokenizer_for(references: list[str]) -> str:
    """`zh` when most of the references' non-space characters are CJK, else sacrebleu's default `13a`."""
    characters = sum(len("".join(text.split())) for text in references)
    cjk = sum(len(_CJK.findall(text)) for text in references)
    return "zh" if characters and cjk / characters > 0.5 else "13a"


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class Bleu(evaluate.Metric):
    def _info(self) -> evaluate.MetricInfo:
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation=_CITATION,
            inputs_description=_KWARGS_DESCRIPTION,
            features=datasets.Features(
                {"predictions": datasets.Value("string"), "references": datasets.Value("string")}
            ),
            codebase_urls=["https://github.com/mjpost/sacrebleu"],
            reference_urls=["https://aclanthology.org/W18-6319/", "https://aclanthology.org/P02-1040/"],
        )

    def _compute(self, predictions: list[str], references: list[str]) -> dict[str, float]:
        tokenize = tokenizer_for(references)
        score = sacrebleu.corpus_bleu(list(predictions), [list(references)], tokenize=tokenize).score
        return {"bleu": score / 100.0}
