"""Multiple-choice accuracy: whether the option an answer picks (A/B/C... or 1/2/3...) is the reference's."""

from __future__ import annotations

import re
import unicodedata

import datasets
import evaluate

_DESCRIPTION = """
The share of answers that choose the reference's option. A label is one letter (A-Z, any case, compared
in upper case) or a number (1-99, compared without leading zeros); letters and numbers never match each
other. Text is NFKC-normalised first, so full-width letters and punctuation (Ｂ, ：, （Ｃ）) count too.

The label an answer chooses is found by the first of these rules that applies:

1. The whole answer is a label, with optional brackets or punctuation around it:
   `B`, `b`, `(c)`, `B.`, `[2]`, `3)`.
2. The answer starts with a label and a delimiter: `B) Paris`, `(C) Paris`, `[B] Paris`, `c. Paris`,
   `2: Paris` (a `.` or `:` must be followed by a space, so `3.5 ...` is not option 3).
3. A label right after "answer", "option" or "choice" (also 答案, 选项, 选择), optionally followed by
   "is" / "would be" / "should be" / "must be" (是, 为, 应该是) and ":", "-" or "=":
   `The answer is B.`, `Answer: (d)`, `the correct option is 3`, `答案是C。`. After such a word, a
   lower-case letter counts only in brackets or before punctuation or the end, so "the answer is a
   cat" does not choose A.
4. Otherwise, exactly one of the references' labels appears in the answer on its own (in brackets, or
   as a standalone upper-case letter or number): `I think B is right` chooses B when the options are
   A-D ("I" is not an option). Two different option labels (`either (A) or (B)`) choose nothing.

An answer no rule applies to chooses nothing and counts as wrong. References are read with rules 1 and 2
(`B`, `(b)`, `B) Paris`); a reference without a label is an error, since the metric is then the wrong
one for the dataset.
"""

_KWARGS_DESCRIPTION = """
Args:
    predictions (list of str): the generated answers, free text.
    references (list of str): the correct option of each row: its label, optionally with its text.
Returns:
    accuracy (float, 0-1): the share of answers whose chosen label equals the reference label.
Examples:
    >>> metric = evaluate.load("plugins/scoring/accuracy")
    >>> metric.compute(predictions=["The answer is B.", "(c)", "A) Paris"], references=["B", "C", "B"])
    {'accuracy': 0.666...}
"""

_LABEL = r"([A-Za-z]|\d{1,2})"
_END = r"(?![A-Za-z0-9])"  # an ASCII word boundary that also holds before CJK text (答案是B选项)
_WHOLE = re.compile(rf"^\W*{_LABEL}\W*$")
_LEADING = re.compile(rf"^\s*(?:\({_LABEL}\)|\[{_LABEL}\]|{_LABEL}(?:\)|\]|[.:](?=\s)))")
# Case-insensitive cue words, case-sensitive labels: after a cue, "a" followed by a word is the article.
_CUE = re.compile(
    r"(?i:\b(?:answer|option|choice)\b|答案|选项|选择)"
    r"(?:\s*(?i:is|would be|should be|must be|应该是|是|为)(?![A-Za-z]))?\s*[:=\-]?\s*"
    rf"(?:\({_LABEL}\)|\[{_LABEL}\]|([A-Z]|\d{{1,2}}){_END}|([a-z])(?=\s*(?:[.,;:!?)]|$)))"
)
_MENTION = re.compile(rf"\({_LABEL}\)|\[{_LABEL}\]|(?<![A-Za-z0-9])([A-Z]|\d{{1,2}}){_END}")


def _canonical(label: str) -> str:
    return str(int(label)) if label.isdigit() else label.upper()


def _first_group(match: re.Match[str] | None) -> str | None:
    if match is None:
        return None
    return _canonical(next(group for group in match.groups() if group))


def reference_label(text: str) -> str | None:
    """The label of a reference (rules 1 and 2), or None."""
    text = unicodedata.normalize("NFKC", text)
    return _first_group(_WHOLE.match(text)) or _first_group(_LEADING.match(text))


def chosen_label(text: str, options: frozenset[str] = frozenset()) -> str | None:
    """The label an answer chooses (rules 1 to 4; `options` are the labels rule 4 looks for), or None."""
    text = unicodedata.normalize("NFKC", text)
    label = reference_label(text)
    if label is None:
        label = _first_group(_CUE.search(text))
    if label is None:
        mentioned = {_canonical(next(g for g in m.groups() if g)) for m in _MENTION.finditer(text)}
        mentioned &= options
        label = mentioned.pop() if len(mentioned) == 1 else None
    return label


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class Accuracy(evaluate.Metric):
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
        labels = []
        for index, reference in enumerate(references):
            label = reference_label(reference)
            if label is None:
                raise ValueError(
                    f"accuracy: reference {index} ({reference[:60]!r}) is not an option label such as B, "
                    "(b), B) Paris or 2; use accuracy only on multiple-choice datasets"
                )
            labels.append(label)
        options = frozenset(labels)
        hits = sum(chosen_label(p, options) == label for p, label in zip(predictions, labels, strict=True))
        return {"accuracy": hits / max(len(labels), 1)}
