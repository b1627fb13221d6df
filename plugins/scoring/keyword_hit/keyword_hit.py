"""Example scoring plugin: the share of answers that contain every key term of their reference (0-1).

Copy this directory to write your own metric. In an experiment conf:

    scoring:
      metrics: [rouge_l, keyword_hit]
      primary: keyword_hit

How to write a scoring plugin
-----------------------------
A scoring plugin is an `evaluate` metric module, loaded by path (never from the Hugging Face Hub):

- Make a directory named after the metric holding a script of the same name: `keyword_hit/keyword_hit.py`.
  The name is what a conf writes in `scoring.metrics` and `scoring.primary` and the key on the
  leaderboard: a lowercase identifier (`a-z`, `0-9`, `_`, starting with a letter) that no other metric
  uses (`exact_match`, `token_f1`, `accuracy`, `bleu`, `rouge_l`, `composite`, `keyword_hit`,
  `llm_judge`, `eval_loss` and `perplexity` are taken).
- Put the directory in `plugins/scoring/`, or in a directory of your own listed in
  `$TUNERFLOW_SCORING_PLUGINS` (several are separated by `:`). Nothing in `tasks/` changes. The Airflow
  workers (which validate the conf) and the evaluate step (which computes the metric) must both see it.
- Write `import evaluate` and subclass `evaluate.Metric` (not `from evaluate import Metric`: evaluate
  takes the first Metric class it finds in the module, which would then be the base class). Implement
  `_info()`, returning an `evaluate.MetricInfo` whose features are `predictions` and `references`,
  both `datasets.Value("string")` (one generated answer and one reference answer per held-out row;
  a metric that also needs each row's question declares a third string feature, `questions`, as
  `llm_judge` does), and
  `_compute(predictions, references)`, returning `{"<name>": float}`. Return a finite number; the
  built-in text metrics all read 0-1.
- Say which way is better with a module-level literal: `GREATER_IS_BETTER = True` (the default when
  absent: selection takes the highest, promotion needs the candidate to be higher) or
  `GREATER_IS_BETTER = False` (an error rate, a distance, a length: the lowest wins). It is read from the
  source with `ast`, without importing the module, because conf validation runs where `evaluate` is not
  installed; so it must be a plain `True` or `False`, not an expression.
- evaluate copies only this script into its module cache (plus files imported relatively from this
  directory, `from .helpers import x`), and checks at load time that every library the script imports at
  the top is installed in the trainer image. Heavy imports at the top are fine: the module is imported
  only by the evaluate and check_export steps, never when the DAG is parsed.
- Every row is scored the same way for every job; the metric sees the model's answer (the text the
  chat template's assistant turn produced, special tokens removed) and the reference answer from the
  test split. `tests/plugins/scoring/test_keyword_hit.py` shows how to test a plugin.

This metric's key terms are the reference's words without common English function words (the, of,
is, ...); a reference made only of function words keeps all its words. A term in Latin script must
appear in the answer as a whole word, case-insensitively. Chinese and Japanese are written without
spaces, so a run of them between spaces or punctuation is one term, and it must appear as a substring.
"""

from __future__ import annotations

import re

import datasets
import evaluate

# Higher is better: more answers that carry all their key terms. Write False for metrics to minimise.
GREATER_IS_BETTER = True

_DESCRIPTION = """
The share of rows whose answer contains every key term of the reference. Key terms: the reference's
words (letters or digits; lower-cased) that are not common English function words; a reference made only
of function words keeps all of them. A Latin-script term must appear as a whole word of the answer; a run
of CJK characters (no spaces between words) is one term and must appear as a substring. Useful when a
correct answer must name specific facts (a number, a name, a product) and wording may vary.
"""

_KWARGS_DESCRIPTION = """
Args:
    predictions (list of str): the generated answers.
    references (list of str): one reference answer per prediction.
Returns:
    keyword_hit (float, 0-1): the share of answers that contain all of their reference's key terms.
Examples:
    >>> metric = evaluate.load("plugins/scoring/keyword_hit")
    >>> reference = "It was founded in 1040 as Oslo."  # key terms: founded, 1040, oslo
    >>> answers = ["Oslo was founded around 1040.", "Oslo, since 1040"]  # the second misses "founded"
    >>> metric.compute(predictions=answers, references=[reference] * 2)
    {'keyword_hit': 0.5}
"""

_WORD = re.compile(r"[^\W_]+")
_CJK = re.compile("[\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]")
_FUNCTION_WORDS = """
a an the and or but if of to in on at by for with from as into about than then so not no
is are was were be been being am do does did has have had will would can could should may might must
it its this that these those there here i you he she we they me him her us them my your our their
what which who whom whose when where why how
"""
FUNCTION_WORDS = frozenset(_FUNCTION_WORDS.split())


def key_terms(reference: str) -> list[str]:
    words = _WORD.findall(reference.lower())
    terms = [word for word in words if word not in FUNCTION_WORDS]
    return terms or words


def hit(prediction: str, reference: str) -> bool:
    """Whether the answer contains every key term of the reference."""
    answer = prediction.lower()
    words = set(_WORD.findall(answer))
    return all(term in answer if _CJK.search(term) else term in words for term in key_terms(reference))


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class KeywordHit(evaluate.Metric):
    def _info(self) -> evaluate.MetricInfo:
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation="",
            inputs_description=_KWARGS_DESCRIPTION,
            features=datasets.Features(
                {"predictions": datasets.Value("string"), "references": datasets.Value("string")}
            ),
        )

    def _compute(self, predictions: list[str], references: list[str]) -> dict[str, float]:
        hits = sum(hit(p, r) for p, r in zip(predictions, references, strict=True))
        return {"keyword_hit": hits / max(len(references), 1)}
