"""The example scoring plugin plugins/scoring/keyword_hit: key terms of the reference found in the answer."""

from __future__ import annotations

import pytest

from tasks.scoring.metrics import score
from tasks.scoring.plugins import get, lower_is_better
from tests.fixtures.scoring import metric_module


@pytest.fixture(scope="module")
def keyword_hit():
    return metric_module("keyword_hit")


def test_key_terms_drop_function_words_unless_nothing_else_is_left(keyword_hit):
    assert keyword_hit.key_terms("It was founded in 1040 as Oslo.") == ["founded", "1040", "oslo"]
    assert keyword_hit.key_terms("It is.") == ["it", "is"]  # only function words: keep them all


@pytest.mark.parametrize(
    ("prediction", "reference", "hit"),
    [
        ("Oslo was founded around 1040.", "It was founded in 1040 as Oslo.", True),
        ("OSLO: founded 1040", "It was founded in 1040 as Oslo.", True),  # case and order do not matter
        ("Oslo, since 1040", "It was founded in 1040 as Oslo.", False),  # "founded" is missing
        ("Oslo was founded in 10400.", "It was founded in 1040 as Oslo.", False),  # whole words only
        ("首都是北京。", "北京", True),  # a CJK term is a substring
        ("北方", "北京", False),
    ],
)
def test_an_answer_hits_when_it_holds_every_key_term(keyword_hit, prediction, reference, hit):
    assert keyword_hit.hit(prediction, reference) is hit


def test_the_score_is_the_share_of_hits_and_higher_is_better():
    # Rows 1 and 2 hit, row 3 misses "founded": 2 of 3 = 0.666667.
    reference = "It was founded in 1040 as Oslo."
    answers = ["Oslo was founded around 1040.", "OSLO: founded 1040", "Oslo, since 1040"]
    assert score(["keyword_hit"], answers, [reference] * 3) == {"keyword_hit": 0.666667}
    assert not lower_is_better("keyword_hit")  # declared with GREATER_IS_BETTER = True
    assert get("keyword_hit").script.parent.name == "keyword_hit"
