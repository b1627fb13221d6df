"""What happens to every spooled row, decided on arrays and then carried out.

`RowPlan` holds, for the global position of every row the shard scans spooled, its content key, split,
whether it survives, the first row with the same content and how many mixing copies it gets; dedup,
the split and the mixing weights are applied to those arrays (`tasks.data.splitting`). `route` then
copies the surviving rows from the spool files into the split files and records the dropped ones.
"""

from __future__ import annotations

import json
from collections import Counter
from contextlib import ExitStack
from pathlib import Path
from typing import IO

import numpy as np

from tasks.data import near_dedup
from tasks.data.scan import ShardScan
from tasks.data.splitting import SPLITS, TEST, TRAIN, VALIDATION, assign_splits, first_occurrences, repeats

ROLES = {"train": TRAIN, "validation": VALIDATION, "test": TEST}
EXAMPLES = 5  # dropped row ids named in the failure message


class RowPlan:
    """The per-row decisions, on arrays indexed by the global position of every spooled row."""

    def __init__(self, scans: list[ShardScan]):
        self.scans = scans
        self.offsets = np.cumsum([0] + [s.candidates for s in scans])
        self.keys = np.concatenate([s.keys for s in scans]) if scans else np.zeros(0, dtype=np.uint64)
        n = len(self.keys)
        self.roles = np.full(n, -1, dtype=np.int8)
        for scan in scans:
            if scan.role:
                self.roles[self.window(scan)] = ROLES[scan.role]
        self.alive = np.ones(n, dtype=bool)
        self.first = np.arange(n)
        self.overlaps: dict[int, str] = {}
        self.near: dict[int, tuple[int, float]] = {}  # row -> (the kept row it resembles, similarity)
        self.copies = np.ones(n, dtype=np.int64)

    def dedup(self) -> None:
        self.first = first_occurrences(self.keys)
        self.alive &= self.first == np.arange(len(self.keys))

    def near_dedup(self, threshold: float) -> None:
        """Drop the rows whose MinHash signatures resemble an earlier kept row's (`dedup: near`)."""
        found = near_dedup.near_duplicates(
            [scan.signatures for scan in self.scans],
            [self.alive[self.window(scan)] for scan in self.scans],
            threshold,
        )
        for (shard, line), ((other_shard, other_line), score) in found.items():
            row = int(self.offsets[shard]) + line
            self.near[row] = (int(self.offsets[other_shard]) + other_line, score)
            self.alive[row] = False

    def split(self, ratios: tuple[int, int, int], seed: int) -> None:
        unassigned = self.alive & (self.roles < 0)
        self.roles[unassigned] = assign_splits(self.keys[unassigned], ratios, seed)

    def weigh(self, weights: list[float], seed: int) -> None:
        for scan in self.scans:
            weight = weights[scan.source]
            if weight != 1.0:
                window = self.window(scan)
                self.copies[window] = repeats(self.keys[window], weight, seed)

    def window(self, scan: ShardScan) -> slice:
        """The scan's rows in the global arrays (scans arrive in task order, so its index is its place)."""
        return slice(int(self.offsets[scan.index]), int(self.offsets[scan.index + 1]))


def _row_id(raw: str) -> str:
    return json.loads(raw)["id"]


def route(
    plan: RowPlan, out_dir: Path, rejected: IO[str], reasons: Counter, examples: list[str]
) -> dict[str, int]:
    """Copy every surviving spooled row into its split file (training rows once per mixing copy) and
    record the rows dedup and decontamination dropped."""
    counts = dict.fromkeys(SPLITS, 0)
    needed = set(plan.first[~plan.alive & (plan.first != np.arange(len(plan.first)))].tolist())
    needed.update(other for other, _ in plan.near.values())
    first_ids: dict[int, str] = {}
    with ExitStack() as stack:
        handles = {
            name: stack.enter_context(open(out_dir / f"{name}.jsonl", "w", encoding="utf-8"))
            for name in SPLITS
        }
        for scan in plan.scans:
            window = plan.window(scan)
            start = window.start
            alive, roles = plan.alive[window].tolist(), plan.roles[window].tolist()
            first, copies = plan.first[window].tolist(), plan.copies[window].tolist()
            with open(scan.spool, encoding="utf-8") as handle:
                for line, raw in enumerate(handle):
                    g = start + line
                    if g in needed:
                        first_ids[g] = _row_id(raw)
                    if alive[line]:
                        name = SPLITS[roles[line]]
                        times = copies[line] if roles[line] == TRAIN else 1
                        handles[name].write(raw * times)
                        counts[name] += times
                        continue
                    if g in plan.overlaps:
                        code, detail = "overlaps_eval", f"shares a prompt n-gram with {plan.overlaps[g]}"
                    elif g in plan.near:
                        other, score = plan.near[g]
                        code = "near_duplicate"
                        detail = f"resembles {first_ids[other]} (estimated similarity {score:.2f})"
                    else:
                        code, detail = "duplicate", f"same as {first_ids[first[line]]}"
                    row_id = _row_id(raw)
                    reasons[code] += 1
                    if len(examples) < EXAMPLES:
                        examples.append(row_id)
                    rejected.write(
                        json.dumps({"id": row_id, "reason": code, "detail": detail, "source": scan.source})
                        + "\n"
                    )
    return counts


def collect_rejected(scans: list[ShardScan], rejected: IO[str], examples: list[str]) -> None:
    """Append the rows the shard scans rejected to `rejected`."""
    for scan in scans:
        with open(scan.rejected, encoding="utf-8") as handle:
            for raw in handle:
                if len(examples) < EXAMPLES:
                    examples.append(_row_id(raw))
                rejected.write(raw)
