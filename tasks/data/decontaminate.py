"""Word n-gram overlap between the training split and the evaluation splits (decontamination).

Texts arrive already normalised by the caller (casefolded, whitespace collapsed); here a text is split on
whitespace into words, exactly like `str.split()`, and every run of `n` consecutive words is hashed. A
text with fewer than `n` words contributes a single hash of its whole word sequence, so it can only match
an identical short eval text. Empty texts contribute nothing.

Hash scheme (stable across processes, machines and numpy versions; no salted `hash()`):

* word hash: a polynomial over the word's UTF-8 bytes modulo 2**64, computed for a whole batch at once
  from one prefix sum over the joined bytes (`sum_k byte[s+k] * Q**k`, Q odd), plus the byte length,
  then a splitmix64 finaliser so every bit depends on every byte;
* n-gram hash: Horner's rule over the window's word hashes with a second odd base, plus the window
  length, then splitmix64 again. Windows that would cross a text boundary are masked out.

All arithmetic is numpy uint64, which wraps, so nothing depends on Python's integer size. Collisions
are possible in principle (64 bits) and would only cause a spurious flag, never a missed one.

`EvalIndex` keeps the distinct eval hashes sorted, with the first eval row that produced each, and
answers "which eval row does this train text share an n-gram with" by `np.searchsorted`. It is saved
as a directory of plain `.npy` files so worker processes can memory-map one copy.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np

_U64 = np.uint64
# Odd bases: odd numbers are units modulo 2**64, so the byte base has an inverse (needed below).
_BYTE_BASE = 0x100000001B3  # the FNV-1a 64-bit prime
_WORD_BASE = 0x9E3779B97F4A7C15  # 2**64 / golden ratio, odd
_BYTE_BASE_INV = pow(_BYTE_BASE, -1, 1 << 64)
_LEN_SALT = 0xD6E8FEB86659FD93  # mixes in the length: sequences of different lengths hash apart
_MIX1 = _U64(0xBF58476D1CE4E5B9)
_MIX2 = _U64(0x94D049BB133111EB)

# str.split() also splits on Unicode whitespace; the byte-level splitter below only knows ASCII, so
# non-ASCII whitespace is turned into a plain space first (only for texts that are not ASCII).
_UNICODE_SPACE = re.compile(r"[^\S\x00-\x7f]+")
_IS_SPACE = np.array([chr(b).isspace() for b in range(128)] + [False] * 128, dtype=bool)

# Bytes handled per numpy pass: large enough to amortise the per-pass overhead, small enough that the
# uint64 temporaries (8 bytes per input byte, a few of them) stay in the tens of MB.
_CHUNK_BYTES = 1 << 21

_FORMAT = "tunerflow-eval-index/1"


def _mix(x: np.ndarray) -> np.ndarray:
    """splitmix64 finaliser: a bijection on uint64 with full avalanche (in-place on a temporary)."""
    x = x ^ (x >> _U64(30))
    x *= _MIX1
    x ^= x >> _U64(27)
    x *= _MIX2
    x ^= x >> _U64(31)
    return x


class _Powers:
    """Cached `base**k mod 2**64` for k in [0, size), grown on demand (chunks are usually equal-sized)."""

    def __init__(self, base: int):
        self.base = base
        self.table = np.ones(1, dtype=_U64)

    def upto(self, size: int) -> np.ndarray:
        if len(self.table) < size:
            # Powers of two, so a run of slightly different chunk sizes recomputes at most once.
            grown = np.full(1 << max(16, (size - 1).bit_length()), self.base, dtype=_U64)
            grown[0] = 1
            self.table = np.multiply.accumulate(grown)
        return self.table[:size]


_INV_POWERS = _Powers(_BYTE_BASE_INV)
_POWERS = _Powers(_BYTE_BASE)


def _word_spans(buf: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(start, end) byte offsets of every maximal run of non-whitespace bytes in `buf`."""
    word = ~_IS_SPACE[buf]
    # Pad with whitespace on both sides so every word has a rising and a falling edge.
    edges = np.flatnonzero(np.diff(np.concatenate(([False], word, [False]))))
    return edges[0::2], edges[1::2]


def _word_hashes(buf: np.ndarray, starts: np.ndarray, ends: np.ndarray) -> np.ndarray:
    """Position-independent hash of each word `buf[start:end]`, for all words at once."""
    out = np.empty(len(starts), dtype=_U64)
    lo = 0
    # Word hashes do not depend on where the word sits, so a long text is hashed in segments cut
    # between words: the power tables then stay at _CHUNK_BYTES (or the longest word) entries.
    while lo < len(starts):
        base = starts[lo]
        hi = max(lo + 1, int(np.searchsorted(ends, base + _CHUNK_BYTES, "right")))
        out[lo:hi] = _segment_word_hashes(buf[base : ends[hi - 1]], starts[lo:hi] - base, ends[lo:hi] - base)
        lo = hi
    return out


def _segment_word_hashes(buf: np.ndarray, starts: np.ndarray, ends: np.ndarray) -> np.ndarray:
    size = len(buf)
    # prefix[j] = sum_{i<j} buf[i] * Q**i; a word's slice of it, times P**start, is sum_k buf[s+k] * Q**k.
    prefix = np.empty(size + 1, dtype=_U64)
    prefix[0] = 0
    np.cumsum(np.multiply(buf, _INV_POWERS.upto(size), dtype=_U64), out=prefix[1:])
    poly = (prefix[ends] - prefix[starts]) * _POWERS.upto(size)[starts]
    lengths = (ends - starts).astype(_U64)
    return _mix(poly + lengths * _U64(_LEN_SALT))


def _window_hashes(words: np.ndarray, width: int) -> np.ndarray:
    """Hash of every window of `width` consecutive entries of `words` (Horner, vectorised per offset)."""
    count = len(words) - width + 1
    acc = words[:count].copy()
    for k in range(1, width):
        acc *= _U64(_WORD_BASE)
        acc += words[k : k + count]
    return acc


def _finish(acc: np.ndarray, length: np.ndarray | int) -> np.ndarray:
    return _mix(acc + np.asarray(length, dtype=_U64) * _U64(_LEN_SALT))


def _encode(texts: Sequence[str]) -> list[bytes]:
    return [(t if t.isascii() else _UNICODE_SPACE.sub(" ", t)).encode("utf-8") for t in texts]


def _chunk_bounds(sizes: np.ndarray) -> list[tuple[int, int]]:
    """Split texts into consecutive [lo, hi) ranges of about _CHUNK_BYTES joined bytes each."""
    ends = np.cumsum(sizes + 1)
    bounds, lo = [], 0
    while lo < len(sizes):
        # At least one text per chunk, however long it is.
        hi = max(lo + 1, int(np.searchsorted(ends, (ends[lo - 1] if lo else 0) + _CHUNK_BYTES, "right")))
        bounds.append((lo, hi))
        lo = hi
    return bounds


def _chunk_ngrams(encoded: list[bytes], n: int) -> tuple[np.ndarray, np.ndarray]:
    """(hashes, local owner) for one chunk of encoded texts, ordered by owner then word position."""
    sizes = np.fromiter(map(len, encoded), dtype=np.int64, count=len(encoded))
    # One space between texts: no word can span two texts, and text j starts at text_start[j].
    buf = np.frombuffer(b" ".join(encoded), dtype=np.uint8)
    text_start = np.concatenate(([0], np.cumsum(sizes + 1)[:-1]))
    starts, ends = _word_spans(buf)
    words = _word_hashes(buf, starts, ends)

    owner_of_word = np.searchsorted(text_start, starts, side="right") - 1
    n_words = np.bincount(owner_of_word, minlength=len(encoded))
    first_word = np.concatenate(([0], np.cumsum(n_words)[:-1]))
    # Texts with >= n words yield n_words - n + 1 windows; shorter non-empty texts yield one hash.
    n_out = np.where(n_words >= n, n_words - n + 1, (n_words > 0).astype(np.int64))
    out_start = np.concatenate(([0], np.cumsum(n_out)[:-1]))
    hashes = np.empty(int(n_out.sum()), dtype=_U64)

    if len(words) >= n:
        windows = _finish(_window_hashes(words, n), n)
        win_owner = owner_of_word[: len(windows)]
        # A window is valid when its last word belongs to the same text as its first.
        offset = np.arange(len(windows)) - first_word[win_owner]
        valid = offset + n <= n_words[win_owner]
        hashes[out_start[win_owner[valid]] + offset[valid]] = windows[valid]

    short = np.flatnonzero((n_words > 0) & (n_words < n))
    if len(short):
        hashes[out_start[short]] = _short_hashes(words, first_word[short], n_words[short])
    return hashes, np.repeat(np.arange(len(encoded), dtype=np.int64), n_out)


def _short_hashes(words: np.ndarray, first: np.ndarray, count: np.ndarray) -> np.ndarray:
    """Hash of each whole short word sequence `words[first:first+count]` (count < n)."""
    acc = words[first].copy()
    for k in range(1, int(count.max())):
        live = count > k
        acc[live] = acc[live] * _U64(_WORD_BASE) + words[first[live] + k]
    return _finish(acc, count)


def _iter_ngrams(texts: Sequence[str], n: int) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """(hashes, owner) per chunk of texts; owners are global indices into `texts`."""
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    encoded = _encode(texts)
    sizes = np.fromiter(map(len, encoded), dtype=np.int64, count=len(encoded))
    for lo, hi in _chunk_bounds(sizes):
        hashes, owner = _chunk_ngrams(encoded[lo:hi], n)
        yield hashes, owner + lo


def ngram_hashes(texts: Sequence[str], n: int) -> tuple[np.ndarray, np.ndarray]:
    """(hashes uint64, owner int64 index into `texts`) for every word n-gram of every text, ordered by
    owner then position. A text with fewer than `n` words contributes one hash of its whole word
    sequence; an empty text contributes nothing. Stable across processes and machines."""
    parts = list(_iter_ngrams(texts, n))
    if not parts:
        return np.empty(0, dtype=_U64), np.empty(0, dtype=np.int64)
    return np.concatenate([h for h, _ in parts]), np.concatenate([o for _, o in parts])


class EvalIndex:
    """Sorted distinct n-gram hashes of the eval rows, each with the first eval row that produced it."""

    def __init__(self, hashes: np.ndarray, rows: np.ndarray, ids: np.ndarray, n: int):
        self.hashes = hashes  # sorted, distinct uint64
        self.rows = rows  # int64 index into ids, aligned with hashes
        self.ids = ids  # eval row ids as a numpy str array (no pickling needed to load)
        self.n = n
        self._filter: tuple[np.ndarray, np.uint64] | None = None

    @classmethod
    def build(cls, texts: Sequence[str], ids: Sequence[str], n: int) -> EvalIndex:
        """Index eval rows (validation + test), `ids[i]` naming `texts[i]`."""
        if len(texts) != len(ids):
            raise ValueError(f"{len(texts)} texts but {len(ids)} ids")
        hashes, owner = ngram_hashes(texts, n)
        # return_index gives first occurrences and owner is non-decreasing: the lowest eval row wins.
        distinct, first = np.unique(hashes, return_index=True)
        return cls(distinct, owner[first], np.array(list(ids), dtype=np.str_), n)

    def __len__(self) -> int:
        return len(self.hashes)

    def save(self, path: Path) -> None:
        """Write the index as a directory of .npy files (memory-mappable by `load`)."""
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        np.save(path / "hashes.npy", np.ascontiguousarray(self.hashes, dtype=_U64))
        np.save(path / "rows.npy", np.ascontiguousarray(self.rows, dtype=np.int64))
        np.save(path / "ids.npy", self.ids)
        # meta.json last: its presence marks a complete index.
        (path / "meta.json").write_text(json.dumps({"format": _FORMAT, "n": self.n, "size": len(self)}))

    @classmethod
    def load(cls, path: Path, mmap: bool = True) -> EvalIndex:
        """Open an index written by `save`; with `mmap`, worker processes share the OS page cache."""
        path = Path(path)
        meta = json.loads((path / "meta.json").read_text())
        if meta.get("format") != _FORMAT:
            raise ValueError(f"{path}: not a {_FORMAT} index")
        mode = "r" if mmap else None
        return cls(
            np.load(path / "hashes.npy", mmap_mode=mode, allow_pickle=False),
            np.load(path / "rows.npy", mmap_mode=mode, allow_pickle=False),
            np.load(path / "ids.npy", allow_pickle=False),
            int(meta["n"]),
        )

    def _prefilter(self) -> tuple[np.ndarray, np.uint64]:
        """A bool table over the top hash bits, ~8 slots per distinct hash (so ~1/8 false positives)."""
        if self._filter is None:
            bits = min(30, max(16, len(self).bit_length() + 3))
            shift = _U64(64 - bits)
            table = np.zeros(1 << bits, dtype=bool)
            table[np.asarray(self.hashes) >> shift] = True
            self._filter = (table, shift)
        return self._filter

    def first_overlap(self, texts: Sequence[str]) -> list[str | None]:
        """For each text, the id of an eval row sharing an n-gram with it (the row behind the text's
        earliest matching n-gram), else None."""
        found: list[str | None] = [None] * len(texts)
        if len(self) == 0:
            return found
        table, shift = self._prefilter()
        last = len(self.hashes) - 1
        for hashes, owner in _iter_ngrams(texts, self.n):
            # Most train n-grams miss: a table lookup on the top bits rules out most of them before
            # the (cache-unfriendly) binary search.
            maybe = np.flatnonzero(table[hashes >> shift])
            pos = np.minimum(np.searchsorted(self.hashes, hashes[maybe]), last)
            equal = self.hashes[pos] == hashes[maybe]
            hit, pos = maybe[equal], pos[equal]
            if not len(hit):
                continue
            hit_owner = owner[hit]
            # Owners are non-decreasing, so the first hit of each text is where the owner changes.
            first = np.flatnonzero(np.concatenate(([True], hit_owner[1:] != hit_owner[:-1])))
            rows = self.rows[pos[first]]
            for text, row in zip(hit_owner[first].tolist(), rows.tolist(), strict=True):
                found[text] = str(self.ids[row])
        return found
