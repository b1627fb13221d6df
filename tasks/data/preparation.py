"""Step: read, validate, deduplicate, split and version one dataset.

`python -m tasks.prepare_dataset --job <spec>`.

The version is a hash of the input bytes and every setting that changes the output
(`tasks.data.parts.content_version`), so the same input is prepared once and every later run reuses the
committed splits.

Scale: rows are read in shards by a pool of worker processes (`tasks.data.pool`, `tasks.data.scan`),
which spool the converted rows to disk and hand back only a 64-bit content key and token lengths per
row. Dedup, the split and decontamination are then decided on those arrays (`tasks.data.row_plan`,
`tasks.data.eval_overlap`), and the rows are routed from the spool files into the split files. Memory
grows by a few bytes per row, not with the rows' text.
"""

from __future__ import annotations

import json
import logging
import shutil
import time
from collections import Counter
from pathlib import Path
from typing import Any

from tasks.contracts.prepare import PreparedDataset, PrepareSpec
from tasks.data import pool
from tasks.data.card import write_card
from tasks.data.checks import checks_run
from tasks.data.eval_overlap import decontaminate, external_eval_prompts
from tasks.data.parts import content_version, part_format, plan_parts, ratios, rows_kind
from tasks.data.prep_report import dataset_format, dataset_stats, validation_report
from tasks.data.row_plan import RowPlan, collect_rejected, route
from tasks.data.rows import failure_message
from tasks.data.scan import ScanSettings, scan_shard
from tasks.data.sources import SourceError
from tasks.data.token_counts import TokenizerSpec, prepare_tokenizers
from tasks.runtime.errors import StepError
from tasks.runtime.step import execute
from tasks.storage import layout, store

log = logging.getLogger("tunerflow.prepare_dataset")
# Length statistics need a sample, not every row: about 20k rows of 256 bytes are counted in full.
LENGTH_SAMPLE_BYTES = 20_000 * 256
WORK = "_work"  # spool files, removed before the version is committed


def prepare_dataset(job: PrepareSpec) -> PreparedDataset:
    """The step's work on a completed job (`complete_job`): `output` and `version` are set."""
    try:
        return _prepare_rows(job)
    except SourceError as error:
        # A file that turned out unreadable while its rows were read, in this process or a worker.
        raise StepError(f"dataset '{job.dataset.name}': {error}") from None


def _prepare_rows(job: PrepareSpec) -> PreparedDataset:
    started = time.perf_counter()
    dataset = job.dataset
    parts = plan_parts(dataset)
    formats = [part_format(dataset.name, part) for part in parts]
    kind = rows_kind(dataset.name, formats)
    out_dir = store.local_dir(job.output)
    work = out_dir / WORK
    work.mkdir(parents=True, exist_ok=True)
    workers = pool.workers()
    total_bytes = sum(path.stat().st_size for part in parts for path in part.source.files)
    settings = ScanSettings(
        sample_every=max(1, total_bytes // LENGTH_SAMPLE_BYTES),
        pii=dataset.pii,
        filters=tuple(dataset.filters),
        min_tokens=dataset.min_tokens,
        max_tokens=dataset.max_tokens,
        max_row_bytes=dataset.max_row_bytes,
        tokenizers=tuple(_tokenizers(job, work)),
        near_shingle=dataset.near_dedup_shingle if dataset.dedup == "near" else 0,
        max_image_bytes=dataset.max_image_bytes,
        max_image_pixels=dataset.max_image_pixels,
    )
    tasks = pool.shard_tasks(parts, formats, settings, work, pool.shard_bytes(total_bytes, workers))
    log.info(
        "dataset %s: %d shard(s) from %d source(s), %d worker(s)",
        dataset.name,
        len(tasks),
        len(parts),
        workers,
    )
    scans = []
    for scan in pool.run(scan_shard, tasks, workers):
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
    plan = RowPlan(scans)
    if dataset.dedup != "none":
        plan.dedup()
    if dataset.dedup == "near":
        plan.near_dedup(dataset.near_dedup_threshold)
    plan.split(ratios(job), dataset.seed)
    decontaminated = None
    if dataset.decontaminate_ngram:
        external = external_eval_prompts(job, work, workers)
        decontaminated = decontaminate(plan, dataset.decontaminate_ngram, work, workers, external)
    plan.weigh([part.weight for part in parts], dataset.seed)

    reasons: Counter = Counter()
    for scan in scans:
        reasons.update(scan.reasons)
    examples: list[str] = []
    with open(out_dir / "rejected.jsonl", "w", encoding="utf-8") as rejected:
        collect_rejected(scans, rejected, examples)
        counts = route(plan, out_dir, rejected, reasons, examples)
    total = sum(scan.rows_in for scan in scans)
    stats = dataset_stats(job, parts, formats, kind, plan, counts, reasons, total, settings.sample_every)
    tokenizer_names = [spec.name for spec in settings.tokenizers]
    if kind == "vision":
        stats["image_tokens"] = {
            spec.name: spec.images.per_image_shown()
            for spec in settings.tokenizers
            if spec.images is not None
        }
    stats["checks"] = [
        check.model_dump(mode="json", exclude_none=True)
        for check in checks_run(dataset, tokenizer_names, reasons, decontaminated)
    ]
    report = validation_report(stats)
    # Into the output directory, where the commit lists (and on S3 uploads) it.
    store.write_json(store.to_uri(out_dir / "validation_report.json"), report)
    # Counts and reason codes only: row text never reaches the logs.
    log.info(
        "dataset %s: %s",
        dataset.name,
        json.dumps({k: stats[k] for k in ("rows_in", "rows_dropped", "counts", "drop_reasons")}),
    )
    message = failure_message(dataset.name, total, reasons, examples, dataset.max_drop_ratio)
    if message:
        # A refused dataset commits nothing, yet its report must be readable in the store (on file:// this
        # rewrites the same file in place).
        store.write_json(store.join(job.output, "validation_report.json"), report)
        raise StepError(message)
    write_card(out_dir, stats)
    shutil.rmtree(work)
    elapsed = time.perf_counter() - started
    log.info("dataset %s prepared in %.1f s (%.0f rows/s)", dataset.name, elapsed, total / max(elapsed, 1e-9))
    return PreparedDataset(
        name=dataset.name,
        version=job.version,
        uri=job.output,
        format=dataset_format(formats),
        kind=kind,
        counts=counts,
        dropped=sum(reasons.values()),
        drop_reasons=dict(reasons),
    )


def _tokenizers(job: PrepareSpec, work: Path) -> list[TokenizerSpec]:
    checks = job.dataset.length_checks
    if not job.tokenizers:
        if checks:
            # Experiments always pass their models' tokenizers and the CLI the catalog's default one; a
            # job spec written without any still prepares (an earlier version's stored spec must), but
            # the skipped check is said here and in the validation report's `checks`.
            log.warning(
                "dataset %s: %s not checked: no tokenizer was given to count tokens (pass --model "
                "CATALOG_NAME to `tunerflow dataset prepare`)",
                job.dataset.name,
                " and ".join(checks),
            )
        return []
    try:
        return prepare_tokenizers(job.tokenizers, job.store_root, work)
    except Exception as error:
        if not checks:
            raise
        names = ", ".join(entry.name for entry in job.tokenizers)
        raise StepError(
            f"dataset '{job.dataset.name}': {' and '.join(checks)} need a tokenizer, and the tokenizer of "
            f"{names} could not be loaded ({type(error).__name__}: {error}); pass a model whose tokenizer "
            "loads here"
        ) from None


def complete_job(job: PrepareSpec) -> PrepareSpec:
    """The job with its content version and the output prefix that version names."""
    version = content_version(plan_parts(job.dataset), job)
    output = layout.dataset_version(job.store_root, job.dataset.name, version)
    return job.model_copy(update={"version": version, "output": output})


def prepare(spec: PrepareSpec) -> dict[str, Any]:
    """Validate and split one dataset into the store, keyed by its content version; returns the committed
    PreparedDataset as JSON."""
    return execute("prepare_dataset", prepare_dataset, complete_job(spec), PreparedDataset, shared=True)
