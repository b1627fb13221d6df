"""Step: read, validate, deduplicate, split and version one dataset.

`python -m tasks.prepare_dataset --job <spec>`.

The version is a hash of the input bytes and every setting that changes the output (checks, split,
tokenizers), so the same input is prepared once and every later run reuses the committed splits.

Scale: rows are read in shards by a pool of worker processes (`tasks.data.scan`), which spool the
converted rows to disk and hand back only a 64-bit content key and token lengths per row. Dedup, the
split and decontamination are then decided on those arrays, and the rows are routed from the spool
files into the split files. Memory grows by a few bytes per row, not with the rows' text.
"""

from __future__ import annotations

import json
import logging
import multiprocessing
import os
import shutil
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from tasks.config.dataset import DatasetConfig
from tasks.data.rows import failure_message
from tasks.data.scan import OverlapTask, ScanSettings, ShardScan, ShardTask, check_overlaps, scan_shard
from tasks.data.sources import Source, SourceError, open_source
from tasks.data.splitting import SPLITS, TEST, TRAIN, VALIDATION, assign_splits, first_occurrences, repeats
from tasks.runtime.errors import StepError
from tasks.runtime.step import execute
from tasks.storage import layout, store

log = logging.getLogger("tunerflow.prepare_dataset")
PREP_VERSION = "3"  # bump when validation or split logic changes, so old versions are not reused
ROLES = {"train": TRAIN, "validation": VALIDATION, "test": TEST}
# Length statistics need a sample, not every row: about 20k rows of 256 bytes are counted in full.
LENGTH_SAMPLE_BYTES = 20_000 * 256
WORK = "_work"  # spool files, removed before the version is committed


@dataclass
class Part:
    """One source of the dataset's rows, with how to read it and what it feeds."""

    source: Source
    role: str | None  # train/validation/test for pre-split inputs; None: split by ratio
    weight: float
    fmt: str
    columns: dict[str, str]


def cache_dir() -> Path:
    """Where remote sources (S3, Hugging Face) are downloaded once, keyed by their content: the same
    cache as the store's S3 mirror (`TUNERFLOW_CACHE_DIR`)."""
    return store.cache_root()


def plan_parts(dataset: DatasetConfig) -> list[Part]:
    if dataset.registered:
        raise StepError(
            f"dataset '{dataset.name}' still names registered dataset '{dataset.registered}'; "
            "validate_conf resolves it from the registry before preparation"
        )

    def part(uri: str, role: str | None = None, weight: float = 1.0, fmt: str = "", columns=None) -> Part:
        try:
            source = open_source(uri, cache_dir=cache_dir())
        except SourceError as error:
            raise StepError(f"dataset '{dataset.name}': {error}") from None
        return Part(
            source, role, weight, fmt or dataset.format, dataset.columns if columns is None else columns
        )

    if dataset.presplit:
        # Evaluation rows first: a training row equal to one of them is then the duplicate that goes.
        given = [
            ("validation", dataset.validation_uri),
            ("test", dataset.test_uri),
            ("train", dataset.train_uri),
        ]
        return [part(uri, role) for role, uri in given if uri]
    if dataset.sources:
        return [part(s.uri, None, s.weight, s.format, s.columns) for s in dataset.sources]
    return [part(dataset.uri)]


def ratios(job: dict[str, Any], dataset: DatasetConfig) -> tuple[int, int, int]:
    """An eval set (`scoring.eval_dataset`) is scored on every row: all of it is the test split."""
    return (0, 0, 100) if job.get("role") == "eval" else dataset.ratios


def content_version(
    parts: list[Part],
    dataset: DatasetConfig,
    tokenizers: list[dict[str, Any]],
    job: dict[str, Any] | None = None,
) -> str:
    import hashlib

    from tasks.data.token_counts import distinct_tokenizers, tokenizer_identity

    job = job or {}
    settings = dataset.model_dump(mode="json", exclude={"name", "max_drop_ratio"})
    if job.get("role") == "eval":
        settings["role"] = "eval"
    # What training rows were decontaminated against is part of what the version holds.
    if job.get("eval_prompts"):
        settings["eval_prompts"] = job["eval_prompts"]
    if job.get("eval_sets"):
        settings["eval_sets"] = [
            [definition, [p.source.fingerprint for p in plan_parts(DatasetConfig.model_validate(definition))]]
            for definition in job["eval_sets"]
        ]
    settings["v"] = PREP_VERSION
    settings["tokenizers"] = sorted(tokenizer_identity(entry) for entry in distinct_tokenizers(tokenizers))
    settings["parts"] = [[p.role, p.weight, p.fmt, p.columns, p.source.fingerprint] for p in parts]
    return hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:16]


def _detect(name: str, part: Part) -> str:
    from tasks.data.formats import detect_format

    if part.fmt != "auto":
        return part.fmt
    for shard in part.source.shards():
        for _, record in shard.records():
            if isinstance(record, dict):
                try:
                    return detect_format(record, part.columns)
                except ValueError as error:
                    raise StepError(f"dataset '{name}', {part.source.uri}: {error}") from None
    raise StepError(f"dataset '{name}': {part.source.uri} has no parseable row to detect the format from")


def _workers() -> int:
    return max(1, int(os.environ.get("TUNERFLOW_DATA_WORKERS") or os.cpu_count() or 1))


def _shard_bytes(total_bytes: int, workers: int) -> int:
    """Several shards per worker for balance, but not so small that per-shard costs dominate."""
    if os.environ.get("TUNERFLOW_DATA_SHARD_BYTES"):
        return int(os.environ["TUNERFLOW_DATA_SHARD_BYTES"])
    return int(min(64 << 20, max(1 << 20, total_bytes // (workers * 4))))


def _run(fn, tasks: list, workers: int) -> Iterator:
    """`fn` over tasks in order: inline for one worker, else a spawn pool (forking a process that holds
    Rust tokenizer threads can deadlock)."""
    if workers == 1 or len(tasks) <= 1:
        yield from map(fn, tasks)
        return
    context = multiprocessing.get_context("spawn")
    with context.Pool(min(workers, len(tasks))) as pool:
        yield from pool.imap(fn, tasks)


class _Plan:
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
        self.copies = np.ones(n, dtype=np.int64)

    def dedup(self) -> None:
        self.first = first_occurrences(self.keys)
        self.alive &= self.first == np.arange(len(self.keys))

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


def _eval_prompts(plan: _Plan) -> tuple[list[str], list[str]]:
    from tasks.data.rows import prompt_text

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


def _external_eval_prompts(job: dict[str, Any], work: Path, workers: int) -> tuple[list[str], list[str]]:
    """The prompts of the experiment's separate eval set (`scoring.eval_dataset`, read from its sources
    here, every row, unfiltered) and fixed questions (`scoring.eval_questions`), which no training row
    may overlap either."""
    from tasks.data.rows import prompt_text

    texts = [item["text"] for item in job.get("eval_prompts") or []]
    ids = [item["id"] for item in job.get("eval_prompts") or []]
    for definition in job.get("eval_sets") or []:
        dataset = DatasetConfig.model_validate(definition)
        directory = work / f"eval-{dataset.name}"
        directory.mkdir(exist_ok=True)
        parts = [(part, _detect(dataset.name, part)) for part in plan_parts(dataset)]
        pieces = [(part, fmt, shard) for part, fmt in parts for shard in part.source.shards(1 << 30)]
        tasks = [
            ShardTask(i, shard, 0, "test", fmt, part.columns, ScanSettings(), str(directory))
            for i, (part, fmt, shard) in enumerate(pieces)
        ]
        for scan in _run(scan_shard, tasks, workers):
            with open(scan.spool, encoding="utf-8") as handle:
                for raw in handle:
                    row = json.loads(raw)
                    texts.append(prompt_text(row))
                    ids.append(f"{dataset.name}:{row['id']}")
    return texts, ids


def _decontaminate(
    plan: _Plan, n: int, work: Path, workers: int, external: tuple[list[str], list[str]]
) -> None:
    from tasks.data.decontaminate import EvalIndex

    train = plan.alive & (plan.roles == TRAIN)
    texts, ids = _eval_prompts(plan)
    texts, ids = texts + external[0], ids + external[1]
    if not texts or not train.any():
        return
    index_path = work / "eval_index.npz"
    EvalIndex.build(texts, ids, n).save(index_path)
    tasks = [OverlapTask(s.spool, train[plan.window(s)], str(index_path)) for s in plan.scans]
    for scan, flagged in zip(plan.scans, _run(check_overlaps, tasks, workers), strict=True):
        start = plan.window(scan).start
        for line, eval_id in flagged:
            plan.overlaps[int(start + line)] = eval_id
            plan.alive[start + line] = False


def _row_id(raw: str) -> str:
    return json.loads(raw)["id"]


def _route(plan: _Plan, out_dir: Path, rejected, reasons: Counter, examples: list[str]) -> dict[str, int]:
    """Copy every surviving spooled row into its split file (training rows once per mixing copy) and
    record the rows dedup and decontamination dropped."""
    counts = dict.fromkeys(SPLITS, 0)
    needed = set(plan.first[~plan.alive & (plan.first != np.arange(len(plan.first)))].tolist())
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
                    else:
                        code, detail = "duplicate", f"same as {first_ids[first[line]]}"
                    row_id = _row_id(raw)
                    reasons[code] += 1
                    if len(examples) < 5:
                        examples.append(row_id)
                    rejected.write(
                        json.dumps({"id": row_id, "reason": code, "detail": detail, "source": scan.source})
                        + "\n"
                    )
    return counts


def _collect_rejected(scans: list[ShardScan], rejected, examples: list[str]) -> None:
    for scan in scans:
        with open(scan.rejected, encoding="utf-8") as handle:
            for raw in handle:
                if len(examples) < 5:
                    examples.append(_row_id(raw))
                rejected.write(raw)


def _length_stats(plan: _Plan, sample_every: int) -> dict[str, dict[str, Any]]:
    from tasks.data.length_stats import LengthHistogram

    names = list(plan.scans[0].lengths) if plan.scans else []
    out = {}
    for name in names:
        histogram = LengthHistogram()
        for scan in plan.scans:
            window = plan.window(scan)
            sampled = plan.keys[window] % np.uint64(sample_every) == 0
            histogram.add(scan.lengths[name][plan.alive[window] & sampled])
        out[name] = histogram.to_dict()
    return out


def _kind(name: str, formats: list[str]) -> str:
    from tasks.data.plugins import kind_of

    kinds = sorted({kind_of(fmt) for fmt in formats})
    if len(kinds) > 1:
        raise StepError(f"dataset '{name}': its sources hold different kinds of rows ({', '.join(kinds)})")
    return kinds[0]


def _prepare(job: dict[str, Any]) -> dict[str, Any]:
    try:
        return _prepare_rows(job)
    except SourceError as error:
        # A file that turned out unreadable while its rows were read, in this process or a worker.
        raise StepError(f"dataset '{job['dataset']['name']}': {error}") from None


def _prepare_rows(job: dict[str, Any]) -> dict[str, Any]:
    started = time.perf_counter()
    dataset = DatasetConfig.model_validate(job["dataset"])
    parts = plan_parts(dataset)
    formats = [_detect(dataset.name, part) for part in parts]
    kind = _kind(dataset.name, formats)
    out_dir = store.local_dir(job["output"])
    work = out_dir / WORK
    work.mkdir(parents=True, exist_ok=True)
    workers = _workers()
    total_bytes = sum(path.stat().st_size for part in parts for path in part.source.files)
    settings = ScanSettings(
        sample_every=max(1, total_bytes // LENGTH_SAMPLE_BYTES),
        pii=dataset.pii,
        filters=tuple(dataset.filters),
        min_tokens=dataset.min_tokens,
        max_tokens=dataset.max_tokens,
        tokenizers=tuple(_tokenizers(job, work)),
    )
    target = _shard_bytes(total_bytes, workers)
    tasks = [
        ShardTask(0, shard, index, part.role, fmt, part.columns, settings, str(work))
        for index, (part, fmt) in enumerate(zip(parts, formats, strict=True))
        for shard in part.source.shards(target)
    ]
    tasks = [
        ShardTask(i, t.shard, t.source, t.role, t.fmt, t.columns, t.settings, t.work_dir)
        for i, t in enumerate(tasks)
    ]
    log.info(
        "dataset %s: %d shard(s) from %d source(s), %d worker(s)",
        dataset.name,
        len(tasks),
        len(parts),
        workers,
    )
    scans = []
    for scan in _run(scan_shard, tasks, workers):
        scans.append(scan)
        rate = scan.rows_in / max(scan.seconds, 1e-9)
        log.info(
            "shard %d/%d: %d rows read in %.1f s (%.0f rows/s)",
            scan.index + 1,
            len(tasks),
            scan.rows_in,
            scan.seconds,
            rate,
        )
    plan = _Plan(scans)
    if dataset.dedup:
        plan.dedup()
    plan.split(ratios(job, dataset), dataset.seed)
    if dataset.decontaminate_ngram:
        external = _external_eval_prompts(job, work, workers)
        _decontaminate(plan, dataset.decontaminate_ngram, work, workers, external)
    plan.weigh([part.weight for part in parts], dataset.seed)

    reasons: Counter = Counter()
    for scan in scans:
        reasons.update(scan.reasons)
    examples: list[str] = []
    with open(out_dir / "rejected.jsonl", "w", encoding="utf-8") as rejected:
        _collect_rejected(scans, rejected, examples)
        counts = _route(plan, out_dir, rejected, reasons, examples)
    total = sum(scan.rows_in for scan in scans)
    stats = _stats(
        job, dataset, parts, formats, kind, scans, plan, counts, reasons, total, settings.sample_every
    )
    report = {k: v for k, v in stats.items() if k != "token_lengths"} | {"token_lengths": _summaries(stats)}
    # Into the output directory, where the commit lists (and on S3 uploads) it.
    (out_dir / "validation_report.json").write_text(json.dumps(report, indent=2, sort_keys=True, default=str))
    # Counts and reason codes only: row text never reaches the logs.
    log.info(
        "dataset %s: %s",
        dataset.name,
        json.dumps({k: stats[k] for k in ("rows_in", "rows_dropped", "counts", "drop_reasons")}),
    )
    message = failure_message(dataset.name, total, reasons, examples, dataset.max_drop_ratio)
    if message:
        if store.is_s3(job["output"]):
            # A refused dataset commits nothing, yet its report must be readable in the store.
            store.write_json(store.join(job["output"], "validation_report.json"), report)
        raise StepError(message)
    from tasks.data.card import write_card

    write_card(out_dir, stats)
    shutil.rmtree(work)
    elapsed = time.perf_counter() - started
    log.info("dataset %s prepared in %.1f s (%.0f rows/s)", dataset.name, elapsed, total / max(elapsed, 1e-9))
    return {
        "name": dataset.name,
        "version": job["version"],
        "uri": job["output"],
        "format": formats[0] if len(set(formats)) == 1 else "mixed",
        "kind": kind,
        "counts": counts,
        "dropped": sum(reasons.values()),
        "drop_reasons": dict(reasons),
    }


def _summaries(stats: dict[str, Any]) -> dict[str, Any]:
    from tasks.data.length_stats import LengthHistogram

    return {name: LengthHistogram.from_dict(data).summary() for name, data in stats["token_lengths"].items()}


def _stats(
    job, dataset, parts, formats, kind, scans, plan, counts, reasons, total, sample_every
) -> dict[str, Any]:
    pii: Counter = Counter()
    per_source = [{"rows_in": 0} for _ in parts]
    for scan in scans:
        pii.update(scan.pii)
        per_source[scan.source]["rows_in"] += scan.rows_in
    return {
        "name": dataset.name,
        "version": job["version"],
        "format": formats[0] if len(set(formats)) == 1 else "mixed",
        "kind": kind,
        "sources": [
            {
                "uri": part.source.uri,
                "fingerprint": part.source.fingerprint,
                "rows_in": info["rows_in"],
                "weight": part.weight,
                "format": fmt,
                "role": part.role,
            }
            for part, fmt, info in zip(parts, formats, per_source, strict=True)
        ],
        "counts": counts,
        "rows_in": total,
        "rows_kept": int(plan.alive.sum()),
        "rows_dropped": sum(reasons.values()),
        "drop_reasons": dict(reasons.most_common()),
        "pii": dict(pii),
        "pii_mode": dataset.pii,
        "settings": {
            "split": "pre-split" if dataset.presplit else ",".join(map(str, ratios(job, dataset))),
            "role": job.get("role", "train"),
            "seed": dataset.seed,
            "min_tokens": dataset.min_tokens,
            "max_tokens": dataset.max_tokens,
            "dedup": dataset.dedup,
            "decontaminate_ngram": dataset.decontaminate_ngram,
            "filters": dataset.filters,
            "tokenizers": [entry["name"] for entry in job.get("tokenizers", [])],
        },
        "token_lengths": _length_stats(plan, sample_every),
        "token_lengths_sample": f"1 in {sample_every} rows, chosen by content hash"
        if sample_every > 1
        else "all rows",
        "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
    }


def _tokenizers(job: dict[str, Any], work: Path):
    entries = job.get("tokenizers") or []
    if not entries:
        log.info("no tokenizer given: token lengths are not checked")
        return []
    from tasks.data.token_counts import prepare_tokenizers

    return prepare_tokenizers(entries, job["store_root"], work)


def complete_job(job: dict[str, Any]) -> dict[str, Any]:
    dataset = DatasetConfig.model_validate(job["dataset"])
    parts = plan_parts(dataset)
    version = content_version(parts, dataset, job.get("tokenizers") or [], job)
    return {
        **job,
        "version": version,
        "output": layout.dataset_version(job["store_root"], dataset.name, version),
    }


def prepare(job: dict[str, Any]) -> dict[str, Any]:
    """Validate and split one dataset into the store, keyed by its content version."""
    return execute("prepare_dataset", _prepare, complete_job(job))
