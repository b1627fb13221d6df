from __future__ import annotations

import random

import numpy as np
import pytest

from tasks.config.catalog import CatalogEntry
from tasks.data.token_counts import TokenCounter, distinct_tokenizers, prepare_tokenizers


@pytest.fixture(scope="module")
def specs(tiny_model_dir, tmp_path_factory):
    entry = CatalogEntry(name="tiny", source={"path": str(tiny_model_dir)}, kind="uri")
    return prepare_tokenizers([entry], "file:///unused", tmp_path_factory.mktemp("tok"))


def _rows(n: int, seed: int = 0) -> list[dict]:
    rng = random.Random(seed)
    words = [
        "who",
        "are",
        "you",
        "tuna",
        "model",
        "data",
        "train",
        "answer",
        "question",
        "what",
        "is",
        "your",
        "name",
        "license",
        "python",
    ]
    rows = []
    for _ in range(n):
        turns = []
        for _ in range(rng.randint(1, 3)):
            turns.append({"role": "user", "content": " ".join(rng.choices(words, k=rng.randint(1, 40)))})
            turns.append({"role": "assistant", "content": " ".join(rng.choices(words, k=rng.randint(1, 80)))})
        rows.append({"messages": turns})
    return rows


def test_chat_counts_match_the_rendered_template_within_a_token_per_turn(specs, tiny_model_dir):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    rows = _rows(50)
    counted = TokenCounter(specs).count(rows)["tiny"]
    for row, count in zip(rows, counted.tolist(), strict=True):
        exact = len(tokenizer.apply_chat_template(row["messages"], tokenize=True))
        assert abs(count - exact) <= len(row["messages"]), (count, exact)


def test_byte_bounds_skip_only_rows_they_prove_and_give_the_same_verdicts(specs):
    assert specs[0].byte_level and specs[0].max_token_bytes > 1
    counter = TokenCounter(specs)
    rows = _rows(400, seed=1)
    exact = counter.count(rows)["tiny"]
    # Byte counts run a few times token counts: a limit of 3x the median proves the short rows only.
    low, high = 1, 3 * int(np.median(exact))
    bounded = counter.lengths(rows, np.zeros(len(rows), dtype=bool), low, high)["tiny"]
    skipped = bounded < 0
    assert 0 < skipped.sum() < len(rows), "some rows are proven by their size, the rest are counted"
    assert np.array_equal(bounded[~skipped], exact[~skipped])
    assert ((exact[skipped] >= low) & (exact[skipped] <= high)).all(), "a skipped row is within the limits"
    sampled = counter.lengths(rows, np.ones(len(rows), dtype=bool), low, high)["tiny"]
    assert np.array_equal(sampled, exact), "sampled rows are always counted, for the statistics"


def test_models_sharing_weights_and_overrides_share_one_tokenizer():
    a = {"name": "a", "source": {"hub": "org/m"}, "tokenizer": {}}
    b = {"name": "b", "source": {"hub": "org/m"}, "tokenizer": {}}
    c = {"name": "c", "source": {"hub": "org/m"}, "tokenizer": {"eos_token": "</s>"}}
    assert [e["name"] for e in distinct_tokenizers([a, b, c])] == ["a", "c"]
