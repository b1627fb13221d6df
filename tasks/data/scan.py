"""The per-shard work of dataset preparation, run in worker processes.

Pass one (`scan_shard`): read rows, convert them to the internal schema, redact or drop PII, apply plugin
filters and count tokens; write the surviving rows to a spool file and return compact per-row arrays
(a 64-bit content key and token lengths) so the main process can deduplicate and split millions of rows
without holding them. Pass two (`check_overlaps`): flag training rows whose prompt shares an n-gram with
an evaluation prompt. Row text never reaches a log line or an error message.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from array import array
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from tasks.data import near_dedup, pii
from tasks.data.decontaminate import EvalIndex
from tasks.data.formats import convert
from tasks.data.plugins import apply_filters
from tasks.data.rows import DEFAULT_MAX_ROW_BYTES, RowError, message_parts, normalise, prompt_text
from tasks.data.sources import Shard
from tasks.data.token_counts import TokenCounter, TokenizerSpec
from tasks.data.vision_images import DEFAULT_MAX_IMAGE_BYTES, DEFAULT_MAX_IMAGE_PIXELS, resolve_images

log = logging.getLogger("tunerflow.prepare_dataset")
BATCH = 2048


@dataclass(frozen=True)
class ScanSettings:
    pii: str = "off"
    filters: tuple[str, ...] = ()
    min_tokens: int = 0
    max_tokens: int | None = None
    tokenizers: tuple[TokenizerSpec, ...] = ()
    max_row_bytes: int = DEFAULT_MAX_ROW_BYTES  # longer rows are dropped unparsed (tasks.data.raw_rows)
    sample_every: int = 1  # token lengths are counted for the statistics on rows whose key % this == 0
    near_shingle: int = 0  # words per shingle of the MinHash signatures for `dedup: near`; 0: none
    max_image_bytes: int = DEFAULT_MAX_IMAGE_BYTES  # vision rows: larger image files are dropped
    max_image_pixels: int = DEFAULT_MAX_IMAGE_PIXELS  # vision rows: larger images are dropped


@dataclass(frozen=True)
class ShardTask:
    index: int
    shard: Shard
    source: int
    role: str | None  # train/validation/test for pre-split inputs, None when split by ratio
    fmt: str
    columns: dict[str, str]
    settings: ScanSettings
    work_dir: str


@dataclass
class ShardScan:
    index: int
    source: int
    role: str | None
    spool: str
    rejected: str
    signatures: str = ""  # .npy of the spooled rows' MinHash signatures (`dedup: near` only)
    rows_in: int = 0
    keys: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.uint64))
    lengths: dict[str, np.ndarray] = field(default_factory=dict)
    reasons: Counter = field(default_factory=Counter)
    pii: Counter = field(default_factory=Counter)
    seconds: float = 0.0

    @property
    def candidates(self) -> int:
        return len(self.keys)


_COUNTERS: dict[tuple[TokenizerSpec, ...], TokenCounter] = {}


def _counter(specs: tuple[TokenizerSpec, ...]) -> TokenCounter:
    """One set of loaded tokenizers per worker process, reused across its shards."""
    if specs not in _COUNTERS:
        _COUNTERS[specs] = TokenCounter(list(specs))
    return _COUNTERS[specs]


def content_key(row: dict[str, Any]) -> int:
    """64 bits of a hash of the normalised row: duplicates share it, and the split is drawn from it."""
    return int.from_bytes(hashlib.blake2b(normalise(row).encode(), digest_size=8).digest(), "little")


def _texts(row: dict[str, Any]) -> Iterator[str]:
    if "text" in row:
        yield row["text"]
        return
    for part in message_parts(row) if "prompt" in row else ("messages",):
        for message in row[part]:
            yield message["content"]


def _map_texts(row: dict[str, Any], fn) -> dict[str, Any]:
    def turns(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return [{**m, "content": fn(m["content"])} for m in messages]

    if "text" in row:
        return {**row, "text": fn(row["text"])}
    if "prompt" in row:
        return {**row, **{part: turns(row[part]) for part in message_parts(row)}}
    return {**row, "messages": turns(row["messages"])}


def _apply_pii(row: dict[str, Any], mode: str, counts: Counter) -> dict[str, Any]:
    found: Counter = Counter()
    if mode == "drop":
        for text in _texts(row):
            found.update(pii.find(text))
        if found:
            raise RowError("pii", ", ".join(sorted(found)))
        return row

    def redact(text: str) -> str:
        redacted, kinds = pii.redact(text)
        found.update(kinds)
        return redacted

    row = _map_texts(row, redact)
    counts.update(found)
    return row


def _convert(record: Any, task: ShardTask, pii_counts: Counter) -> dict[str, Any]:
    if isinstance(record, RowError):
        raise record
    row = convert(record, task.fmt, task.columns)
    if "images" in row:  # a vision row: its images resolved beside the dataset file, and checked
        settings = task.settings
        base_dir = Path(task.shard.path).parent
        row = resolve_images(row, base_dir, settings.max_image_bytes, settings.max_image_pixels)
    if task.settings.pii != "off":
        row = _apply_pii(row, task.settings.pii, pii_counts)
    if task.settings.filters:
        code = apply_filters(row, list(task.settings.filters))
        if code:
            raise RowError(code, "rejected by a data plugin filter")
    return row


class _Spooler:
    """Buffers converted rows, counts their tokens a batch at a time, and spools the ones that fit."""

    def __init__(self, task: ShardTask, scan: ShardScan, out, rejected):
        self.task, self.scan, self.out, self.rejected = task, scan, out, rejected
        self.counter = _counter(task.settings.tokenizers)
        self.pending: list[tuple[str, dict[str, Any], int]] = []
        self.keys = array("Q")
        self.lengths: dict[str, list[np.ndarray]] = {spec.name: [] for spec in task.settings.tokenizers}
        self.signatures: list[np.ndarray] = []

    def reject(self, row_id: str, code: str, detail: str) -> None:
        self.scan.reasons[code] += 1
        self.rejected.write(
            json.dumps({"id": row_id, "reason": code, "detail": detail, "source": self.task.source}) + "\n"
        )

    def add(self, row_id: str, row: dict[str, Any], key: int) -> None:
        self.pending.append((row_id, row, key))
        if len(self.pending) >= BATCH:
            self.flush()

    def flush(self) -> None:
        if not self.pending:
            return
        settings = self.task.settings
        keys = np.fromiter((key for _, _, key in self.pending), dtype=np.uint64, count=len(self.pending))
        sampled = keys % np.uint64(settings.sample_every) == 0
        counts = self.counter.lengths(
            [row for _, row, _ in self.pending], sampled, settings.min_tokens, settings.max_tokens
        )
        names = list(counts)
        stacked = (
            np.stack([counts[n] for n in names]) if names else np.zeros((0, len(self.pending)), np.int32)
        )
        spooled = []
        for position, (row_id, row, key) in enumerate(self.pending):
            column = stacked[:, position]
            problem = self._length_problem(column, names)
            if problem:
                self.reject(row_id, *problem)
                continue
            for name, value in zip(names, column, strict=True):
                self.lengths[name].append(value)
            self.keys.append(key)
            self.out.write(json.dumps({"id": row_id, **row}, ensure_ascii=False) + "\n")
            spooled.append(row)
        if settings.near_shingle:
            texts = [normalise(row) for row in spooled]
            self.signatures.append(near_dedup.signatures(texts, settings.near_shingle))
        self.pending.clear()

    def _length_problem(self, column: np.ndarray, names: list[str]) -> tuple[str, str] | None:
        settings = self.task.settings
        for name, value in zip(names, column.tolist(), strict=True):
            if value < 0:
                continue  # not counted: the byte bounds proved it fits
            if value < settings.min_tokens:
                return "too_short", f"{value} tokens with {name} < {settings.min_tokens}"
            if settings.max_tokens is not None and value > settings.max_tokens:
                return "too_long", f"{value} tokens with {name} > {settings.max_tokens}"
        return None

    def finish(self) -> None:
        self.flush()
        self.scan.keys = np.frombuffer(self.keys.tobytes(), dtype=np.uint64).copy()
        self.scan.lengths = {
            name: np.asarray(values, dtype=np.int32) for name, values in self.lengths.items()
        }
        if self.task.settings.near_shingle:
            # On disk, not in the result: the main process memory-maps them one row at a time.
            self.scan.signatures = str(Path(self.task.work_dir) / f"{self.task.index:05d}.minhash.npy")
            empty = np.zeros((0, near_dedup.NUM_PERM), dtype=np.uint32)
            np.save(self.scan.signatures, np.concatenate(self.signatures) if self.signatures else empty)


def scan_shard(task: ShardTask) -> ShardScan:
    started = time.perf_counter()
    work = Path(task.work_dir)
    scan = ShardScan(
        task.index,
        task.source,
        task.role,
        spool=str(work / f"{task.index:05d}.rows.jsonl"),
        rejected=str(work / f"{task.index:05d}.rejected.jsonl"),
    )
    with (
        open(scan.spool, "w", encoding="utf-8") as out,
        open(scan.rejected, "w", encoding="utf-8") as rejected,
    ):
        spooler = _Spooler(task, scan, out, rejected)
        for row_id, record in task.shard.records(task.settings.max_row_bytes):
            scan.rows_in += 1
            try:
                row = _convert(record, task, scan.pii)
            except RowError as error:
                spooler.reject(row_id, error.code, error.detail)
                continue
            spooler.add(row_id, row, content_key(row))
        spooler.finish()
    scan.seconds = time.perf_counter() - started
    return scan


@dataclass(frozen=True)
class OverlapTask:
    spool: str
    train: np.ndarray  # bool per spooled row: is it a training row to check
    index_path: str


def check_overlaps(task: OverlapTask) -> list[tuple[int, str]]:
    """(line of the spool, id of the evaluation row it overlaps) for every contaminated training row."""
    index = EvalIndex.load(Path(task.index_path))
    flagged: list[tuple[int, str]] = []
    lines: list[int] = []
    texts: list[str] = []

    def flush() -> None:
        for line, hit in zip(lines, index.first_overlap(texts), strict=True):
            if hit is not None:
                flagged.append((line, hit))
        lines.clear()
        texts.clear()

    wanted = task.train.tolist()
    with open(task.spool, encoding="utf-8") as handle:
        for line, raw in enumerate(handle):
            if wanted[line]:
                lines.append(line)
                texts.append(prompt_text(json.loads(raw)))
                if len(lines) >= BATCH:
                    flush()
    flush()
    return flagged
