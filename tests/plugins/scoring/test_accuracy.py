"""plugins/scoring/accuracy: which option label a free-text answer chooses (the rules in its docstring)."""

from __future__ import annotations

import pytest

from tests.fixtures.scoring import metric_module

OPTIONS = frozenset("ABCD")


@pytest.fixture(scope="module")
def accuracy():
    return metric_module("accuracy")


@pytest.mark.parametrize(
    ("answer", "label"),
    [
        # Rule 1: the whole answer is a label.
        ("B", "B"),
        ("b", "B"),
        ("(c)", "C"),
        (" B. ", "B"),
        ("[2]", "2"),
        ("02", "2"),
        ("Ｂ", "B"),  # full-width, NFKC-normalised
        # Rule 2: a leading label and a delimiter.
        ("B) Paris", "B"),
        ("(C) Paris", "C"),
        ("[d] Rome", "D"),
        ("c. Paris", "C"),
        ("2: Paris", "2"),
        ("3.5 is the answer", None),  # "3." needs a space after it to be a label
        # Rule 3: after "answer", "option", "choice", 答案, ...
        ("The answer is B.", "B"),
        ("Answer: (d)", "D"),
        ("I believe the answer is c.", "C"),
        ("The correct option is 3", "3"),
        ("答案是C。", "C"),
        ("答案：（Ｂ）", "B"),
        ("the answer is a cat", None),  # a lower-case letter before a word is the article
        # Rule 4: the only option label mentioned.
        ("I think B is right", "B"),  # "I" is not one of the options
        ("It has to be (c), clearly", "C"),
        ("Either (A) or (B)", None),  # two options: no choice
        ("Paris", None),
    ],
)
def test_chosen_label(accuracy, answer, label):
    assert accuracy.chosen_label(answer, OPTIONS) == label


def test_rule_four_only_looks_for_the_references_labels(accuracy):
    assert accuracy.chosen_label("I think B is right") is None  # no options known: nothing to look for
    assert accuracy.chosen_label("I'd pick 2", frozenset({"1", "2", "3"})) == "2"


@pytest.mark.parametrize(
    ("reference", "label"), [("B", "B"), ("(b)", "B"), ("B) Paris", "B"), ("2", "2"), ("Paris", None)]
)
def test_reference_label(accuracy, reference, label):
    assert accuracy.reference_label(reference) == label
