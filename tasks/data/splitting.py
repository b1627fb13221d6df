"""Dedup, split and mixing decisions, vectorised over one 64-bit content key per row.

Everything here is a pure function of the keys and a seed, so the outcome depends on the rows' content
and not on their order, the number of worker processes or the shard boundaries.
"""

from __future__ import annotations

import hashlib

import numpy as np

SPLITS = ("train", "validation", "test")
TRAIN, VALIDATION, TEST = 0, 1, 2


def _mix(keys: np.ndarray, salt: int) -> np.ndarray:
    """splitmix64 of keys xor a salt: a well-spread 64-bit value per row, vectorised."""
    with np.errstate(over="ignore"):
        z = keys ^ np.uint64(salt & 0xFFFFFFFFFFFFFFFF)
        z = z + np.uint64(0x9E3779B97F4A7C15)
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        return z ^ (z >> np.uint64(31))


def _salt(seed: int, purpose: str) -> int:
    return int.from_bytes(hashlib.blake2b(f"{purpose}:{seed}".encode(), digest_size=8).digest(), "little")


def first_occurrences(keys: np.ndarray) -> np.ndarray:
    """For each row, the index of the first row with the same content key (itself when it is first)."""
    _, first, inverse = np.unique(keys, return_index=True, return_inverse=True)
    return first[inverse.reshape(-1)]


def assign_splits(keys: np.ndarray, ratios: tuple[int, int, int], seed: int) -> np.ndarray:
    """A split per row (TRAIN/VALIDATION/TEST), deterministic for the seed and the rows' content and not
    their order: rows are ranked by a keyed hash of their content and cut at exact ratio counts."""
    n = len(keys)
    n_test = round(n * ratios[2] / 100)
    n_validation = round(n * ratios[1] / 100)
    n_train = n - n_test - n_validation
    order = np.argsort(_mix(keys, _salt(seed, "split")), kind="stable")
    roles = np.empty(n, dtype=np.int8)
    roles[order[:n_train]] = TRAIN
    roles[order[n_train : n_train + n_validation]] = VALIDATION
    roles[order[n_train + n_validation :]] = TEST
    return roles


def repeats(keys: np.ndarray, weight: float, seed: int) -> np.ndarray:
    """How many times each training row of a source is written for a mixing weight: floor(weight), plus
    one more for a deterministic (content-keyed) fraction of rows equal to weight's fractional part."""
    whole = int(weight)
    fraction = weight - whole
    uniform = (_mix(keys, _salt(seed, "mix")) >> np.uint64(11)).astype(np.float64) / float(1 << 53)
    return (whole + (uniform < fraction)).astype(np.int64)
