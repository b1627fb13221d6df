"""Decontamination of a dataset being prepared: no training row may share a prompt n-gram with an
evaluation prompt, whether of the dataset's own validation and test rows, the experiment's separate
eval set (`scoring.eval_dataset`) or its fixed questions (`scoring.eval_questions`). The n-gram index is
`tasks.data.decontaminate`; the training rows are checked in the worker pool (`tasks.data.scan`).
"""

from __future__ import annotations

import json
from pathlib import Path

from tasks.contracts.prepare import PrepareSpec
from tasks.data.decontaminate import EvalIndex
from tasks.data.parts import part_format, plan_parts
from tasks.data.pool import run, shard_tasks
from tasks.data.row_plan import RowPlan
from tasks.data.rows import prompt_text
from tasks.data.scan import OverlapTask, ScanSettings, check_overlaps, scan_shard
from tasks.data.splitting import TEST, TRAIN, VALIDATION

Prompts = tuple[list[str], list[str]]  # (folded prompt texts, the ids of their rows)


def _eval_prompts(plan: RowPlan) -> Prompts:
    texts, ids = [], []
    evaluation = (plan.roles == VALIDATION) | (plan.roles == TEST)
    for scan in plan.scans:
        window = plan.window(scan)
        wanted = (evaluation[window] & plan.alive[window]).tolist()
        if not any(wanted):
            continue
        with open(scan.spool, encoding="utf-8") as handle:
            for line, raw in enumerate(handle):
                if wanted[line]:
                    row = json.loads(raw)
                    texts.append(prompt_text(row))
                    ids.append(row["id"])
    return texts, ids


def external_eval_prompts(job: PrepareSpec, work: Path, workers: int) -> Prompts:
    """The prompts of the experiment's separate eval set (read from its sources here, every row,
    unfiltered) and fixed questions, which no training row may overlap either."""
    texts = [prompt.text for prompt in job.eval_prompts or []]
    ids = [prompt.id for prompt in job.eval_prompts or []]
    for dataset in job.eval_sets or []:
        directory = work / f"eval-{dataset.name}"
        directory.mkdir(exist_ok=True)
        parts = plan_parts(dataset)
        formats = [part_format(dataset.name, part) for part in parts]
        settings = ScanSettings(max_row_bytes=dataset.max_row_bytes)
        tasks = shard_tasks(parts, formats, settings, directory, 1 << 30, role="test")
        for scan in run(scan_shard, tasks, workers):
            with open(scan.spool, encoding="utf-8") as handle:
                for raw in handle:
                    row = json.loads(raw)
                    texts.append(prompt_text(row))
                    ids.append(f"{dataset.name}:{row['id']}")
    return texts, ids


def decontaminate(plan: RowPlan, n: int, work: Path, workers: int, external: Prompts) -> str | None:
    """Drop from the plan every training row whose prompt shares an n-gram of `n` words with an
    evaluation prompt, remembering which one. None when the check ran, else why there was nothing to
    check (the validation report says so)."""
    train = plan.alive & (plan.roles == TRAIN)
    texts, ids = _eval_prompts(plan)
    texts, ids = texts + external[0], ids + external[1]
    if not texts:
        return "no validation, test or evaluation rows to compare the training rows against"
    if not train.any():
        return "no training rows"
    index_path = work / "eval_index.npz"
    EvalIndex.build(texts, ids, n).save(index_path)
    tasks = [OverlapTask(s.spool, train[plan.window(s)], str(index_path)) for s in plan.scans]
    for scan, flagged in zip(plan.scans, run(check_overlaps, tasks, workers), strict=True):
        start = plan.window(scan).start
        for line, eval_id in flagged:
            plan.overlaps[int(start + line)] = eval_id
            plan.alive[start + line] = False
    return None
