"""Decontamination: n-gram hashing (stable, vectorised, boundary-masked) and the eval-side index."""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from tasks.data import decontaminate
from tasks.data.decontaminate import EvalIndex, ngram_hashes

REPO = str(Path(__file__).resolve().parents[3])
MASK = (1 << 64) - 1


def _words(prefix: str, count: int) -> list[str]:
    return [f"{prefix}{i}" for i in range(count)]


def _mix_ref(x: int) -> int:
    x ^= x >> 30
    x = (x * 0xBF58476D1CE4E5B9) & MASK
    x ^= x >> 27
    x = (x * 0x94D049BB133111EB) & MASK
    return x ^ (x >> 31)


def _word_ref(word: str) -> int:
    data = word.encode("utf-8")
    poly = sum(b * pow(decontaminate._BYTE_BASE_INV, k, 1 << 64) for k, b in enumerate(data)) & MASK
    return _mix_ref((poly + len(data) * decontaminate._LEN_SALT) & MASK)


def _seq_ref(words: list[str]) -> int:
    acc = 0
    for word in words:
        acc = (acc * decontaminate._WORD_BASE + _word_ref(word)) & MASK
    return _mix_ref((acc + len(words) * decontaminate._LEN_SALT) & MASK)


def _ngrams_ref(texts: list[str], n: int) -> tuple[list[int], list[int]]:
    """The documented scheme in plain Python integers, one window at a time."""
    hashes, owner = [], []
    for i, text in enumerate(texts):
        words = text.split()
        windows = [words] if 0 < len(words) < n else [words[j : j + n] for j in range(len(words) - n + 1)]
        hashes += [_seq_ref(w) for w in windows]
        owner += [i] * len(windows)
    return hashes, owner


TEXTS = [
    "the quick brown fox jumps over the lazy dog",
    "",
    "one",
    "  leading   and\ttrailing\nwhitespace  ",
    "unicode wörds — ünïcödé 文字 and\u00a0no-break\u2003em space",
    " ".join(_words("w", 30)),
    "a b",
    "x" * 300 + " long word",
]


@pytest.mark.parametrize("n", [1, 2, 3, 5, 13])
def test_hashes_follow_the_documented_scheme(n):
    hashes, owner = ngram_hashes(TEXTS, n)
    ref_hashes, ref_owner = _ngrams_ref(TEXTS, n)
    assert hashes.dtype == np.uint64 and owner.dtype == np.int64
    assert hashes.tolist() == ref_hashes
    assert owner.tolist() == ref_owner


def test_counts_per_text_and_empty_texts_contribute_nothing():
    texts = [" ".join(_words("a", 20)), "", "   ", "short text", " ".join(_words("b", 13))]
    _, owner = ngram_hashes(texts, 13)
    assert np.bincount(owner, minlength=len(texts)).tolist() == [8, 0, 0, 1, 1]
    hashes, owner = ngram_hashes([], 13)
    assert len(hashes) == len(owner) == 0


def test_whitespace_is_only_a_separator():
    a, _ = ngram_hashes(["a b c d"], 2)
    b, _ = ngram_hashes(["  a\tb\n\nc \u3000 d "], 2)
    assert a.tolist() == b.tolist()


def test_windows_never_cross_text_boundaries():
    left, right = " ".join(_words("l", 10)), " ".join(_words("r", 10))
    joined, _ = ngram_hashes([left + " " + right], 13)
    separate, _ = ngram_hashes([left, right], 13)
    # Two short texts each hash as a whole; no window spans the two.
    assert len(separate) == 2
    assert not set(separate.tolist()) & set(joined.tolist())


def test_chunking_does_not_change_the_hashes(monkeypatch):
    rng = random.Random(3)
    pieces = ["a", "bb", "ccc", "d d", "é"]
    texts = [" ".join(rng.choice(pieces) for _ in range(rng.randint(0, 40))) for _ in range(300)] + TEXTS
    expected = ngram_hashes(texts, 5)
    monkeypatch.setattr(decontaminate, "_CHUNK_BYTES", 64)  # many chunks; texts and a word longer than one
    got = ngram_hashes(texts, 5)
    assert got[0].tolist() == expected[0].tolist()
    assert got[1].tolist() == expected[1].tolist()


# "the quick brown fox" -> two 3-grams, "hi" -> one short-text hash (also what _ngrams_ref gives).
GOLDEN = ["5da1a886eec59bec", "250fe4b3c93c6540", "28d566c2b00ba309"]


def test_golden_values_pin_the_scheme():
    # An index saved by one version must keep matching train texts hashed by the next.
    hashes, _ = ngram_hashes(["the quick brown fox", "hi"], 3)
    assert [f"{h:016x}" for h in hashes.tolist()] == GOLDEN


def test_hashes_are_identical_in_another_process():
    code = (
        "import json, sys; from tasks.data.decontaminate import ngram_hashes;"
        "texts = json.loads(sys.stdin.read());"
        "h, o = ngram_hashes(texts, 3); print(json.dumps([h.tolist(), o.tolist()]))"
    )
    env = {**os.environ, "PYTHONHASHSEED": "12345"}  # a different salt for str hash() than ours
    out = subprocess.run(
        [sys.executable, "-c", code],
        input=json.dumps(TEXTS),
        capture_output=True,
        text=True,
        cwd=REPO,
        env=env,
        check=True,
    )
    hashes, owner = ngram_hashes(TEXTS, 3)
    assert json.loads(out.stdout) == [hashes.tolist(), owner.tolist()]


EVAL = [
    " ".join(_words("e", 40)),  # long eval row
    "what is the capital of france",  # short eval row (6 words)
    " ".join(_words("q", 20)),
]
EVAL_IDS = ["validation:0", "test:0", "test:1"]


@pytest.fixture(scope="module")
def index() -> EvalIndex:
    return EvalIndex.build(EVAL, EVAL_IDS, 13)


def test_a_shared_13_gram_flags_the_train_row_with_the_eval_id(index):
    shared = " ".join(_words("e", 40)[10:23])  # exactly 13 consecutive eval words
    train = [
        "intro words " + shared + " outro words",
        "prefix " + " ".join(_words("q", 20)[5:18]),
        "nothing in common at all with anything here",
    ]
    assert index.first_overlap(train) == ["validation:0", "test:1", None]


def test_twelve_shared_words_are_not_enough(index):
    twelve = " ".join(_words("e", 40)[10:22])
    assert index.first_overlap(["intro words " + twelve + " outro words", twelve]) == [None, None]


def test_short_texts_match_only_an_identical_short_eval_text(index):
    train = [
        "what is the capital of france",  # identical short text
        "what   is the\tcapital of france",  # same words, other whitespace
        "what is the capital of",  # a prefix
        "tell me: what is the capital of france",  # contains it, but is another sequence
        " ".join(_words("e", 40)[:5]),  # a short piece of a long eval text
    ]
    assert index.first_overlap(train) == ["test:0", "test:0", None, None, None]


def test_the_earliest_matching_ngram_and_the_first_eval_row_win():
    shared_a, shared_b = _words("a", 13), _words("b", 13)
    evals = [" ".join(shared_b), " ".join(shared_a), " ".join(shared_a)]
    idx = EvalIndex.build(evals, ["e0", "e1", "e2"], 13)
    # The train text shows shared_a first; two eval rows hold it, the lower one is reported.
    assert idx.first_overlap([" ".join([*shared_a, "x", *shared_b])]) == ["e1"]


def test_empty_index_flags_nothing():
    empty = EvalIndex.build([], [], 13)
    assert len(empty) == 0
    assert empty.first_overlap(["anything at all", ""]) == [None, None]
    assert EvalIndex.build(["", "  "], ["a", "b"], 13).first_overlap([""]) == [None]


def test_index_len_counts_distinct_hashes(index):
    assert len(index) == (40 - 13 + 1) + 1 + (20 - 13 + 1)
    twice = EvalIndex.build([EVAL[0], EVAL[0]], ["a", "b"], 13)
    assert len(twice) == 40 - 13 + 1


def test_build_rejects_mismatched_ids_and_bad_n():
    with pytest.raises(ValueError):
        EvalIndex.build(["a"], [], 13)
    with pytest.raises(ValueError):
        ngram_hashes(["a"], 0)


@pytest.mark.parametrize("mmap", [True, False])
def test_save_and_load_round_trip(tmp_path, index, mmap):
    index.save(tmp_path / "eval_index")
    loaded = EvalIndex.load(tmp_path / "eval_index", mmap=mmap)
    assert loaded.n == 13 and len(loaded) == len(index)
    assert isinstance(loaded.hashes, np.memmap) == mmap
    train = ["x " + " ".join(_words("e", 40)[3:16]), "what is the capital of france", "no"]
    assert loaded.first_overlap(train) == index.first_overlap(train) == ["validation:0", "test:0", None]


def test_load_refuses_something_else(tmp_path):
    (tmp_path / "meta.json").write_text(json.dumps({"format": "other", "n": 13}))
    with pytest.raises(ValueError):
        EvalIndex.load(tmp_path)


def test_lookup_matches_a_brute_force_set_intersection():
    rng = random.Random(11)
    vocab = [f"t{i}" for i in range(40)]

    def text() -> str:
        return " ".join(rng.choice(vocab) for _ in range(rng.randint(0, 25)))

    evals, trains = [text() for _ in range(200)], [text() for _ in range(500)]
    n = 4
    idx = EvalIndex.build(evals, [f"e{i}" for i in range(len(evals))], n)
    eval_hashes, eval_owner = _ngrams_ref(evals, n)
    first_row: dict[int, int] = {}
    for h, row in zip(eval_hashes, eval_owner, strict=True):
        first_row.setdefault(h, row)
    expected = []
    for train in trains:
        hits = [first_row[h] for h in _ngrams_ref([train], n)[0] if h in first_row]
        expected.append(f"e{hits[0]}" if hits else None)
    assert idx.first_overlap(trains) == expected
    assert any(expected) and not all(expected)


def test_hashing_speed_sanity():
    rng = np.random.default_rng(0)
    vocab = [f"word{i}" for i in range(50_000)]
    picks = rng.zipf(1.3, size=100_000 * 60) % len(vocab)
    words = [vocab[i] for i in picks]
    texts = [" ".join(words[i * 60 : (i + 1) * 60]) for i in range(100_000)]
    start = time.perf_counter()
    hashes, _ = ngram_hashes(texts, 13)
    elapsed = time.perf_counter() - start
    assert len(hashes) == 100_000 * (60 - 13 + 1)
    print(f"\nngram_hashes: 100k texts x 60 words in {elapsed:.2f}s ({len(texts) / elapsed:,.0f} rows/s)")
    idx = EvalIndex.build(texts[:10_000], [str(i) for i in range(10_000)], 13)
    start = time.perf_counter()
    flagged = idx.first_overlap(texts)
    elapsed = time.perf_counter() - start
    assert sum(f is not None for f in flagged) >= 10_000
    rate = len(texts) / elapsed
    print(f"first_overlap: 100k texts against {len(idx):,} hashes in {elapsed:.2f}s ({rate:,.0f} rows/s)")
