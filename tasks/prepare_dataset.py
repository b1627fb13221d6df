"""Step: load, validate, split and version one dataset. `python -m tasks.prepare_dataset --job ...`

The version is a hash of the input bytes and the preparation settings, so the same input is
prepared once and every later run reuses the committed splits.
"""

from __future__ import annotations

import glob
import hashlib
import itertools
import json
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from tasks import layout, store
from tasks.catalog import data_dir
from tasks.config import DatasetConfig
from tasks.data import detect_format, failure_message, read_lines, split, validate
from tasks.step import StepError, execute, main

log = logging.getLogger("tunerflow.prepare_dataset")
SPLITS = ("train", "validation", "test")
KINDS = {"text": "text", "preference": "preference"}  # every other format is chat
PREP_VERSION = "2"  # bump when validation or split logic changes, so old versions are not reused


def source_files(uri: str) -> list[Path]:
    if uri.startswith("builtin:"):
        path = data_dir() / f"{uri.removeprefix('builtin:')}.jsonl"
        if not path.exists():
            known = ", ".join(p.stem for p in data_dir().glob("*.jsonl"))
            raise StepError(f"dataset uri '{uri}': no builtin dataset of that name (known: {known})")
        return [path]
    pattern = str(store.local_path(uri))
    files = (
        sorted(Path(p) for p in glob.glob(pattern)) if any(c in pattern for c in "*?[") else [Path(pattern)]
    )
    missing = [str(p) for p in files if not p.is_file()]
    if not files or missing:
        raise StepError(f"dataset uri '{uri}': no such file {missing or pattern}")
    return files


def _records(name: str, files: list[Path]) -> Iterator[tuple[str, Any]]:
    """Rows of every file in turn, streamed (Parquet by record batches) rather than held at once."""
    for path in files:
        try:
            yield from read_lines(path)
        except ValueError as error:
            raise StepError(f"dataset '{name}': {error}") from None


def content_version(files: list[Path], dataset: DatasetConfig) -> str:
    digest = hashlib.sha256()
    settings = {
        "format": dataset.format,
        "columns": dataset.columns,
        "split": dataset.split,
        "seed": dataset.seed,
        "v": PREP_VERSION,
    }
    digest.update(json.dumps(settings, sort_keys=True).encode())
    for path in files:
        digest.update(path.name.encode())
        digest.update(store.sha256_file(path).encode())
    return digest.hexdigest()[:16]


def _prepare(job: dict[str, Any]) -> dict[str, Any]:
    dataset = DatasetConfig.model_validate(job["dataset"])
    files = [Path(p) for p in job["files"]]
    records = _records(dataset.name, files)
    fmt = dataset.format
    if fmt == "auto":
        # Look at the first parseable row, keeping what was read so the rows stay one pass.
        seen: list[tuple[str, Any]] = []
        for item in records:
            seen.append(item)
            if isinstance(item[1], dict):
                break
        else:
            raise StepError(f"dataset '{dataset.name}': no parseable row to detect the format from")
        try:
            fmt = detect_format(seen[-1][1], dataset.columns)
        except ValueError as error:
            raise StepError(f"dataset '{dataset.name}': {error}") from None
        records = itertools.chain(seen, records)
    result = validate(records, fmt, dataset.columns)
    prefix = job["output"]
    with open(store.local_path(store.join(prefix, "rejected.jsonl")), "w") as handle:
        for row in result.rejected:
            handle.write(json.dumps(row) + "\n")
    report = {
        "dataset": dataset.name,
        "format": fmt,
        "rows_in": result.total,
        "rows_kept": len(result.kept),
        "rows_dropped": len(result.rejected),
        "drop_reasons": dict(result.reasons),
    }
    store.write_json(store.join(prefix, "validation_report.json"), report)
    # Counts and reason codes only: row text never reaches the logs.
    log.info("dataset %s: %s", dataset.name, json.dumps(report))
    message = failure_message(dataset.name, result, dataset.max_drop_ratio)
    if message:
        raise StepError(message)
    parts = split(result.kept, dataset.ratios, dataset.seed)
    for name in SPLITS:
        with open(store.local_path(store.join(prefix, f"{name}.jsonl")), "w") as handle:
            for row in parts[name]:
                handle.write(json.dumps(row, ensure_ascii=False) + "\n")
    return {
        "name": dataset.name,
        "version": job["version"],
        "uri": prefix,
        "format": fmt,
        "kind": KINDS.get(fmt, "chat"),
        "counts": {name: len(parts[name]) for name in SPLITS},
        "dropped": len(result.rejected),
        "drop_reasons": dict(result.reasons),
    }


def complete_job(job: dict[str, Any]) -> dict[str, Any]:
    dataset = DatasetConfig.model_validate(job["dataset"])
    files = source_files(dataset.uri)
    version = content_version(files, dataset)
    return {
        **job,
        "files": [str(p) for p in files],
        "version": version,
        "output": layout.dataset_version(job["store_root"], dataset.name, version),
    }


def prepare(job: dict[str, Any]) -> dict[str, Any]:
    """Validate and split one dataset into the store, keyed by its content version."""
    return execute("prepare_dataset", _prepare, complete_job(job))


if __name__ == "__main__":
    raise SystemExit(main("prepare_dataset", _prepare, complete_job=complete_job))
