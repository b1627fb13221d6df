"""Rows in, validated and split rows out. Plain functions over dicts; no heavy imports.

Internal schema: `{"id": str, "messages": [{"role", "content"}, ...]}` for chat-style data and
`{"id": str, "text": str}` for raw text. Every dropped row gets a reason code.
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

ROLES = ("system", "user", "assistant")


class RowError(ValueError):
    """A row that cannot be used; `code` is the machine-readable reason."""

    def __init__(self, code: str, detail: str = ""):
        super().__init__(f"{code}: {detail}" if detail else code)
        self.code = code


def read_lines(path: Path) -> Iterator[tuple[str, Any]]:
    """(row id, parsed JSON or RowError) for a JSONL file, or for a JSON file holding a list."""
    if path.suffix == ".json":
        try:
            records = json.loads(path.read_text(encoding="utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as error:
            raise ValueError(f"{path.name}: not a JSON list of rows ({error})") from None
        if not isinstance(records, list):
            raise ValueError(f"{path.name}: a .json dataset must hold a list of rows")
        for index, record in enumerate(records):
            yield f"{path.name}:{index}", record
        return
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


def detect_format(record: dict[str, Any]) -> str:
    if "messages" in record:
        return "messages"
    if "instruction" in record or "output" in record:
        return "alpaca"
    if "text" in record:
        return "text"
    raise ValueError(
        f"cannot detect the format from keys {sorted(record)}; set `format` to alpaca, messages or text"
    )


def _text(record: dict[str, Any], key: str, required: bool = True) -> str:
    value = record.get(key)
    if value is None:
        if required:
            raise RowError("missing_field", key)
        return ""
    if not isinstance(value, str):
        raise RowError("bad_type", f"{key} is {type(value).__name__}, expected a string")
    if required and not value.strip():
        raise RowError("empty_field", key)
    return value


def convert(record: Any, fmt: str) -> dict[str, Any]:
    """One source row in `fmt` to the internal schema; raises RowError with a reason code."""
    if not isinstance(record, dict):
        raise RowError("bad_type", f"row is {type(record).__name__}, expected an object")
    if fmt == "text":
        return {"text": _text(record, "text")}
    if fmt == "alpaca":
        instruction = _text(record, "instruction")
        extra = _text(record, "input", required=False).strip()
        prompt = f"{instruction}\n\n{extra}" if extra else instruction
        messages = []
        system = _text(record, "system", required=False).strip()
        if system:
            messages.append({"role": "system", "content": system})
        messages += [
            {"role": "user", "content": prompt},
            {"role": "assistant", "content": _text(record, "output")},
        ]
        return {"messages": messages}
    if fmt == "messages":
        messages = record.get("messages")
        if not isinstance(messages, list) or not messages:
            raise RowError("missing_field", "messages")
        cleaned = []
        for turn in messages:
            if not isinstance(turn, dict) or turn.get("role") not in ROLES:
                raise RowError("bad_role", f"role must be one of {ROLES}")
            cleaned.append({"role": turn["role"], "content": _text(turn, "content")})
        check_role_order(cleaned)
        return {"messages": cleaned}
    raise ValueError(f"unknown format '{fmt}'")


def check_role_order(messages: list[dict[str, str]]) -> None:
    turns = messages[1:] if messages[0]["role"] == "system" else messages
    if not turns or turns[-1]["role"] != "assistant":
        raise RowError("bad_role_order", "the last turn must be the assistant's")
    for index, turn in enumerate(turns):
        expected = "user" if index % 2 == 0 else "assistant"
        if turn["role"] != expected:
            raise RowError("bad_role_order", f"turn {index} is {turn['role']}, expected {expected}")


def normalise(row: dict[str, Any]) -> str:
    """Text used for duplicate detection and split assignment: case, width and spacing folded."""
    if "text" in row:
        raw = row["text"]
    else:
        raw = "\n".join(f"{m['role']}:{m['content']}" for m in row["messages"])
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


def validate(records: Iterable[tuple[str, Any]], fmt: str) -> Validated:
    out = Validated()
    seen: dict[str, str] = {}
    for row_id, record in records:
        out.total += 1
        try:
            if isinstance(record, RowError):
                raise record
            row = convert(record, fmt)
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
