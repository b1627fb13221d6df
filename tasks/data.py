"""Rows in, validated and split rows out. Plain functions over dicts; no heavy imports.

Internal schema: `{"id": str, "messages": [{"role", "content"}, ...]}` for chat-style data and
`{"id": str, "text": str}` for raw text, `{"id", "prompt", "chosen", "rejected"}` (message lists) for
preference pairs. The per-format converters and format detection are in `tasks.formats`. Every
dropped row gets a reason code.
"""

from __future__ import annotations

import hashlib
import json
import re
import unicodedata
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


class RowError(ValueError):
    """A row that cannot be used; `code` is the machine-readable reason."""

    def __init__(self, code: str, detail: str = ""):
        super().__init__(f"{code}: {detail}" if detail else code)
        self.code = code
        self.detail = detail


def read_lines(path: Path) -> Iterator[tuple[str, Any]]:
    """(row id, parsed row or RowError) for one file, by its suffix: .json (a list of rows, ids from 0),
    .csv (UTF-8 with a header row, ids from 1 for the first row under the header), .parquet (read by
    record batches, ids from 1), anything else JSONL (ids are line numbers). ValueError for a file
    that cannot be read as a whole."""
    if path.suffix == ".json":
        yield from _read_json(path)
    elif path.suffix == ".csv":
        yield from _read_csv(path)
    elif path.suffix == ".parquet":
        yield from _read_parquet(path)
    else:
        yield from _read_jsonl(path)


def _read_jsonl(path: Path) -> Iterator[tuple[str, Any]]:
    with open(path, "rb") as handle:
        for number, raw in enumerate(handle, start=1):
            row_id = f"{path.name}:{number}"
            if not raw.strip():
                continue
            try:
                yield row_id, json.loads(raw.decode("utf-8"))
            except UnicodeDecodeError:
                yield row_id, RowError("not_utf8")
            except json.JSONDecodeError:
                yield row_id, RowError("unparseable")


def _read_json(path: Path) -> Iterator[tuple[str, Any]]:
    try:
        records = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ValueError(f"{path.name}: not a JSON list of rows ({error})") from None
    if not isinstance(records, list):
        raise ValueError(f"{path.name}: a .json dataset must hold a list of rows")
    for index, record in enumerate(records):
        yield f"{path.name}:{index}", record


def _read_csv(path: Path) -> Iterator[tuple[str, Any]]:
    import csv

    csv.field_size_limit(2**31 - 1)  # long documents are normal in training data
    number = 0
    try:
        with open(path, encoding="utf-8-sig", newline="") as handle:
            reader = csv.DictReader(handle)
            if not reader.fieldnames:
                raise ValueError(f"{path.name}: a .csv dataset needs a header row naming the columns")
            for number, row in enumerate(reader, start=1):
                if None in row:
                    yield f"{path.name}:{number}", RowError("unparseable", "more cells than header columns")
                else:
                    yield f"{path.name}:{number}", row
    except UnicodeDecodeError:
        raise ValueError(f"{path.name}: not UTF-8 (after row {number}); save the CSV as UTF-8") from None
    except csv.Error as error:
        raise ValueError(f"{path.name}: not a readable CSV file after row {number} ({error})") from None


def _read_parquet(path: Path, batch_size: int = 1024) -> Iterator[tuple[str, Any]]:
    import pyarrow.parquet as pq

    try:
        parquet = pq.ParquetFile(path)
    except Exception as error:  # pyarrow raises its own ArrowInvalid/OSError family
        raise ValueError(f"{path.name}: not a readable Parquet file ({error})") from None
    number = 0
    for batch in parquet.iter_batches(batch_size=batch_size):
        for record in batch.to_pylist():
            number += 1
            yield f"{path.name}:{number}", record


def detect_format(record: dict[str, Any], columns: dict[str, str] | None = None) -> str:
    """See `tasks.formats.detect_format`."""
    from tasks import formats

    return formats.detect_format(record, columns)


def convert(record: Any, fmt: str, columns: dict[str, str] | None = None) -> dict[str, Any]:
    """One source row in `fmt` to the internal schema; raises RowError with a reason code."""
    from tasks import formats

    return formats.convert(record, fmt, columns)


def _turns(messages: list[dict[str, Any]]) -> str:
    return "\n".join(
        f"{m['role']}:{m['content']}"
        + (json.dumps(m["tool_calls"], sort_keys=True) if m.get("tool_calls") else "")
        for m in messages
    )


def normalise(row: dict[str, Any]) -> str:
    """Text used for duplicate detection and split assignment: case, width and spacing folded."""
    if "text" in row:
        raw = row["text"]
    elif "prompt" in row:
        raw = "\n".join(f"{part}:\n{_turns(row[part])}" for part in ("prompt", "chosen", "rejected"))
    else:
        raw = _turns(row["messages"])
    folded = unicodedata.normalize("NFKC", raw).casefold()
    return re.sub(r"\s+", " ", folded).strip()


@dataclass
class Validated:
    kept: list[dict[str, Any]] = field(default_factory=list)
    rejected: list[dict[str, str]] = field(default_factory=list)
    total: int = 0

    @property
    def reasons(self) -> Counter:
        return Counter(r["reason"] for r in self.rejected)


def validate(
    records: Iterable[tuple[str, Any]], fmt: str, columns: dict[str, str] | None = None
) -> Validated:
    out = Validated()
    seen: dict[str, str] = {}
    for row_id, record in records:
        out.total += 1
        try:
            if isinstance(record, RowError):
                raise record
            row = convert(record, fmt, columns)
            key = hashlib.sha256(normalise(row).encode()).hexdigest()
            if key in seen:
                raise RowError("duplicate", f"same as {seen[key]}")
            seen[key] = row_id
        except RowError as error:
            out.rejected.append({"id": row_id, "reason": error.code, "detail": str(error)})
            continue
        out.kept.append({"id": row_id, **row, "_key": key})
    return out


def split(rows: list[dict[str, Any]], ratios: tuple[int, int, int], seed: int) -> dict[str, list[dict]]:
    """Deterministic for a seed and the content: rows are ordered by a keyed hash, then cut by ratio."""
    ordered = sorted(rows, key=lambda r: hashlib.sha256(f"{seed}:{r['_key']}".encode()).hexdigest())
    n = len(ordered)
    n_test = round(n * ratios[2] / 100)
    n_validation = round(n * ratios[1] / 100)
    n_train = n - n_test - n_validation
    parts = {
        "train": ordered[:n_train],
        "validation": ordered[n_train : n_train + n_validation],
        "test": ordered[n_train + n_validation :],
    }
    return {name: [{k: v for k, v in r.items() if k != "_key"} for r in part] for name, part in parts.items()}


def failure_message(name: str, result: Validated, max_drop_ratio: float) -> str | None:
    """None when the drop ratio is acceptable, else a message with the top reasons and example row ids."""
    ratio = len(result.rejected) / max(result.total, 1)
    if result.total and ratio <= max_drop_ratio and result.kept:
        return None
    top = ", ".join(f"{reason} ({count})" for reason, count in result.reasons.most_common(3))
    examples = ", ".join(r["id"] for r in result.rejected[:5])
    return (
        f"dataset '{name}': {len(result.rejected)} of {result.total} rows dropped ({ratio:.0%}), above "
        f"max_drop_ratio {max_drop_ratio:.0%}. Top reasons: {top or 'no rows'}. Example rows: "
        f"{examples or '-'}. See rejected.jsonl; fix the rows or raise datasets[].max_drop_ratio."
    )
