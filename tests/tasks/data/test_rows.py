from __future__ import annotations

from collections import Counter

import numpy as np

from tasks.data.rows import failure_message, normalise, prompt_text
from tasks.data.scan import content_key
from tasks.data.splitting import TEST, TRAIN, VALIDATION, assign_splits, first_occurrences, repeats


def _keys(n: int, start: int = 0) -> np.ndarray:
    return np.array([content_key({"text": f"row {i}"}) for i in range(start, start + n)], dtype=np.uint64)


def test_split_is_deterministic_disjoint_exact_and_independent_of_row_order():
    keys = _keys(1000)
    roles = assign_splits(keys, (80, 10, 10), seed=3)
    assert [int((roles == r).sum()) for r in (TRAIN, VALIDATION, TEST)] == [800, 100, 100]
    assert np.array_equal(roles, assign_splits(keys, (80, 10, 10), seed=3))
    shuffled = np.random.default_rng(0).permutation(1000)
    by_key = dict(zip(keys.tolist(), roles.tolist(), strict=True))
    again = assign_splits(keys[shuffled], (80, 10, 10), seed=3)
    assert all(by_key[k] == r for k, r in zip(keys[shuffled].tolist(), again.tolist(), strict=True))
    assert not np.array_equal(roles, assign_splits(keys, (80, 10, 10), seed=4))


def test_split_keeps_a_row_in_its_split_when_rows_are_added():
    """Mostly stable: adding 10% more rows moves few existing rows between splits (content-keyed)."""
    keys = _keys(1000)
    before = assign_splits(keys, (90, 5, 5), seed=1)
    after = assign_splits(np.concatenate([keys, _keys(100, start=1000)]), (90, 5, 5), seed=1)[:1000]
    assert (before != after).mean() < 0.05


def test_first_occurrences_point_duplicates_at_the_first_copy():
    keys = np.array([5, 7, 5, 9, 7, 5], dtype=np.uint64)
    assert first_occurrences(keys).tolist() == [0, 1, 0, 3, 1, 0]


def test_mixing_repeats_follow_the_weight_deterministically():
    keys = _keys(20000)
    assert set(repeats(keys, 1.0, 0).tolist()) == {1}
    assert set(repeats(keys, 2.0, 0).tolist()) == {2}
    half = repeats(keys, 0.5, 0)
    assert set(half.tolist()) == {0, 1} and abs(half.mean() - 0.5) < 0.02
    assert np.array_equal(half, repeats(keys, 0.5, 0))
    assert abs(repeats(keys, 1.5, 0).mean() - 1.5) < 0.02


def test_normalise_folds_case_width_and_spacing_and_prompt_text_leaves_out_answers_and_system():
    row = {
        "messages": [
            {"role": "system", "content": "You are a helpful assistant."},
            {"role": "user", "content": "What  is\tＴＨＩＳ?"},
            {"role": "assistant", "content": "A row."},
        ]
    }
    assert "user:what is this?" in normalise(row)
    assert prompt_text(row) == "what is this?"
    pair = {"prompt": [{"role": "user", "content": "Q"}], "chosen": [], "rejected": []}
    assert prompt_text(pair) == "q" and prompt_text({"text": " A  b "}) == "a b"


def test_failure_message_names_the_top_reasons_and_examples():
    reasons = Counter({"duplicate": 5, "too_long": 2, "pii": 1})
    assert failure_message("d", 100, reasons, ["r1"], 0.2) is None
    message = failure_message("d", 10, reasons, ["f:1", "f:2"], 0.2)
    assert message.startswith("dataset 'd': 8 of 10 rows dropped (80%), above max_drop_ratio 20%")
    assert "Top reasons: duplicate (5), too_long (2), pii (1). Example rows: f:1, f:2." in message
    assert "no rows" in failure_message("d", 0, Counter(), [], 0.2)


def _spaced(text: str) -> str:
    return f"  {text} \t"


def test_whitespace_at_every_field_boundary_is_folded_for_dedup_and_decontamination():
    from tasks.data.formats import convert

    q, a = "What is 2 plus 2?", "4"
    chat = {"messages": [{"role": "user", "content": q}, {"role": "assistant", "content": a}]}
    spaced_chat = {
        "messages": [{"role": "user", "content": _spaced(q)}, {"role": "assistant", "content": _spaced(a)}]
    }
    assert content_key(chat) == content_key(spaced_chat)
    assert prompt_text(chat) == prompt_text(spaced_chat)
    assert content_key({"text": q}) == content_key({"text": _spaced(q)})
    alpaca = convert({"instruction": q, "input": "ctx", "output": a}, "alpaca", {})
    spaced_alpaca = convert(
        {"instruction": _spaced(q), "input": _spaced("ctx"), "output": _spaced(a)}, "alpaca", {}
    )
    assert content_key(alpaca) == content_key(spaced_alpaca)
    pair = {
        "prompt": [{"role": "user", "content": q}],
        "chosen": [{"role": "assistant", "content": a}],
        "rejected": [{"role": "assistant", "content": "5"}],
    }
    spaced_pair = {
        "prompt": [{"role": "user", "content": _spaced(q)}],
        "chosen": [{"role": "assistant", "content": _spaced(a)}],
        "rejected": [{"role": "assistant", "content": _spaced("5")}],
    }
    assert content_key(pair) == content_key(spaced_pair)
    assert prompt_text(pair) == prompt_text(spaced_pair)
    # Folding never merges rows that say different things.
    assert content_key(chat) != content_key(
        {**chat, "messages": [chat["messages"][0], {**chat["messages"][1], "content": "5"}]}
    )
