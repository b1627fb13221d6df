"""Near-duplicate detection for `dedup: near`, in the preparation's scale design.

Worker processes (`tasks.data.scan`) compute a MinHash signature (datasketch, `NUM_PERM` 32-bit values)
over the word shingles of every spooled row's folded text (`tasks.data.rows.normalise`: case, width and
spacing folded) and write them next to the spool file as one `.npy` array per shard. The main process
then walks the rows that survived exact dedup in their global order, asks a MinHashLSH index (datasketch)
for earlier kept rows that may resemble each one, checks the candidates' estimated Jaccard similarity
against the threshold, and either drops the row (naming the most similar kept row) or adds it to the
index. Signatures stay on disk (memory-mapped); memory grows with the LSH index of kept rows only.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import Any

import numpy as np

NUM_PERM = 128  # 512 bytes of signature per row, on disk
SEED = 1
SCHEME = "affine32"  # datasketch 2 names its hash scheme; 32-bit values, stored as uint32
_PERMUTATIONS: dict[int, Any] = {}


def _permutations() -> Any:
    """The datasketch permutations for SEED, built once per process (rebuilding them per row costs more
    than hashing a short row)."""
    # datasketch loads scipy (~0.5 s): only a `dedup: near` preparation pays for it.
    from datasketch import MinHash

    if SEED not in _PERMUTATIONS:
        _PERMUTATIONS[SEED] = MinHash(num_perm=NUM_PERM, seed=SEED, scheme=SCHEME).permutations
    return _PERMUTATIONS[SEED]


def shingles(text: str, size: int) -> set[bytes]:
    """The distinct runs of `size` consecutive words of an already folded text; a shorter text is one
    shingle of all its words."""
    words = text.split()
    if len(words) <= size:
        return {" ".join(words).encode()} if words else set()
    return {" ".join(words[k : k + size]).encode() for k in range(len(words) - size + 1)}


def signatures(texts: Sequence[str], size: int) -> np.ndarray:
    """A `(len(texts), NUM_PERM)` uint32 MinHash signature per folded text."""
    from datasketch import MinHash  # scipy comes with it; see _permutations

    permutations = _permutations()
    out = np.empty((len(texts), NUM_PERM), dtype=np.uint32)
    for position, text in enumerate(texts):
        minhash = MinHash(num_perm=NUM_PERM, seed=SEED, permutations=permutations, scheme=SCHEME)
        minhash.update_batch(list(shingles(text, size)))
        out[position] = minhash.hashvalues
    return out


def similarity(a: np.ndarray, b: np.ndarray) -> float:
    """The MinHash estimate of the Jaccard similarity of two rows' shingle sets."""
    return float(np.count_nonzero(a == b)) / len(a)


def near_duplicates(
    files: Sequence[str], alive: Sequence[np.ndarray], threshold: float
) -> dict[tuple[int, int], tuple[tuple[int, int], float]]:
    """For every (shard, line) whose row resembles an earlier kept row, that row's (shard, line) and the
    estimated similarity. `files[i]` holds shard i's signatures, `alive[i]` which of its rows are still
    kept (exact duplicates are already out). Rows are taken in order, so the earliest of a group of near
    duplicates is the one kept, whatever the number of workers."""
    from datasketch import LeanMinHash, MinHashLSH  # scipy comes with it; see _permutations

    try:
        index = MinHashLSH(threshold=threshold, num_perm=NUM_PERM, hashfunc=_band_key)
    except ValueError:
        # Near 1, datasketch's optimum is a single band, which it refuses: 4 bands of 32 still find
        # rows that similar with probability above 0.99 (the estimate then decides).
        index = MinHashLSH(num_perm=NUM_PERM, params=(4, NUM_PERM // 4), hashfunc=_band_key)
    signature_arrays = [np.load(path, mmap_mode="r") for path in files]
    # Index keys are one int per row (shard * stride + line): smaller than tuples in the LSH tables.
    stride = max((len(array) for array in signature_arrays), default=0) + 1
    found: dict[tuple[int, int], tuple[tuple[int, int], float]] = {}
    for shard, (signature_array, kept) in enumerate(zip(signature_arrays, alive, strict=True)):
        for line in np.flatnonzero(kept).tolist():
            values = np.asarray(signature_array[line])
            minhash = LeanMinHash(seed=SEED, hashvalues=values, scheme=SCHEME)
            best: tuple[float, int] | None = None
            for other in index.query(minhash):
                other_shard, other_line = divmod(other, stride)
                score = similarity(values, signature_arrays[other_shard][other_line])
                # The candidates are probable matches only: the estimate decides, ties go to the earliest.
                if score >= threshold and (best is None or (score, -other) > (best[0], -best[1])):
                    best = (score, other)
            if best is None:
                index.insert(shard * stride + line, minhash, check_duplication=False)
            else:
                found[(shard, line)] = (divmod(best[1], stride), best[0])
    return found


def _band_key(band: bytes) -> bytes:
    """8 bytes standing for one band of a signature in the LSH tables (a band is r * 4 bytes)."""
    return hashlib.blake2b(band, digest_size=8).digest()
