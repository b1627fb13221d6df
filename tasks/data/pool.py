"""How dataset preparation fans its shards out: the shard tasks of a dataset's parts, their size, the
number of worker processes, and the pool that runs them.
"""

from __future__ import annotations

import multiprocessing
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from tasks.data.parts import Part
from tasks.data.scan import ScanSettings, ShardTask


def workers() -> int:
    return max(1, int(os.environ.get("TUNERFLOW_DATA_WORKERS") or os.cpu_count() or 1))


def shard_bytes(total_bytes: int, workers: int) -> int:
    """Several shards per worker for balance, but not so small that per-shard costs dominate."""
    if os.environ.get("TUNERFLOW_DATA_SHARD_BYTES"):
        return int(os.environ["TUNERFLOW_DATA_SHARD_BYTES"])
    return int(min(64 << 20, max(1 << 20, total_bytes // (workers * 4))))


def shard_tasks(
    parts: list[Part],
    formats: list[str],
    settings: ScanSettings,
    work_dir: Path,
    target_bytes: int,
    role: str | None = None,
) -> list[ShardTask]:
    """One task per shard of every part, numbered in order; `role` overrides each part's own."""
    pieces = [
        (source, part, fmt, shard)
        for source, (part, fmt) in enumerate(zip(parts, formats, strict=True))
        for shard in part.source.shards(target_bytes)
    ]
    return [
        ShardTask(index, shard, source, role or part.role, fmt, part.columns, settings, str(work_dir))
        for index, (source, part, fmt, shard) in enumerate(pieces)
    ]


def run(fn: Callable[[Any], Any], tasks: list, workers: int) -> Iterator:
    """`fn` over tasks in order: inline for one worker, else a spawn pool (forking a process that holds
    Rust tokenizer threads can deadlock)."""
    if workers == 1 or len(tasks) <= 1:
        yield from map(fn, tasks)
        return
    context = multiprocessing.get_context("spawn")
    with context.Pool(min(workers, len(tasks))) as pool:
        yield from pool.imap(fn, tasks)
