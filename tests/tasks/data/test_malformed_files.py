"""Property-based: mutated dataset files (bytes flipped, cut short, BOMs, deep nesting, stray quotes and
newlines, invalid UTF-8, NULs) in every supported format, read and scanned the way preparation does it.
Every outcome is reason-coded dropped rows or one SourceError naming the file, never another exception.

The example count is explicit (`MALFORMED`: EXAMPLES per format, four formats) and derandomized, so CI
runs the same files every time.
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from tasks.data.format_detection import detect_format
from tasks.data.rows import RowError
from tasks.data.scan import ScanSettings, ShardTask, scan_shard
from tasks.data.sources import SourceError, open_source

EXAMPLES = 150  # per format: 600 mutated files in all
MAX_ROW_BYTES = 4096
MALFORMED = settings(
    max_examples=EXAMPLES,
    derandomize=True,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


def _messages(i: int) -> dict:
    return {
        "messages": [{"role": "user", "content": f"question {i} é?"}, {"role": "assistant", "content": "ok"}]
    }


def _seed(kind: str) -> bytes:
    rows = [_messages(i) for i in range(6)]
    if kind == "jsonl":
        return "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows).encode()
    if kind == "json":
        return json.dumps(rows, ensure_ascii=False, indent=1).encode()
    if kind == "csv":
        out = io.StringIO()
        writer = csv.writer(out)
        writer.writerow(["instruction", "output"])
        writer.writerows([[f'say "hi",\nthen {i}', "hi"] for i in range(6)])
        return out.getvalue().encode()
    import pyarrow as pa
    import pyarrow.parquet as pq

    sink = io.BytesIO()
    table = pa.table({"text": [f"document {i}" for i in range(40)]})
    pq.write_table(table, sink, row_group_size=10)
    return sink.getvalue()


SEEDS = {kind: _seed(kind) for kind in ("jsonl", "json", "csv", "parquet")}
FORMATS = {"jsonl": "messages", "json": "messages", "csv": "alpaca", "parquet": "text"}
INSERTS = [
    b"\xef\xbb\xbf",  # a BOM anywhere
    b"[" * 3000,  # nesting beyond the parser's recursion limit
    b'{"a": ' * 1500,
    b'"',
    b"\n",
    b"\r\n",
    b",",
    b"\x00",
    b"\xff\xfe",  # not UTF-8
    b"\xe9",
    b"x" * (MAX_ROW_BYTES + 10),  # a row over max_row_bytes
    b"{}",
    b"[]",
    b"null",
]

# Whole hostile rows, inserted at a row boundary so the rest of the file stays well formed.
ROWS = [
    b"[" * 1500 + b"]" * 1500,  # deeper than the recursion limit, shorter than MAX_ROW_BYTES
    b'{"messages": [{"role": "user", "content": "' + b"y" * (MAX_ROW_BYTES * 3) + b'"}]}',
    b'{"messages": [{"role": "user", "content": {"deep": ' + b"[" * 1200 + b"]" * 1200 + b"}}]}",
    b'{"messages": ' + b"[" * 100_000 + b"]" * 100_000 + b"}",  # nested 100,000 deep
    b'"just a string"',
    b'{"messages": null}',
    b"\xef\xbb\xbf{}",
]


def _boundary(data: bytearray, kind: str, at: int) -> int:
    """A row boundary near `at`: after a newline (JSONL, CSV) or after the list's '[' (JSON)."""
    if kind == "json":
        return data.find(b"[") + 1
    found = data.find(b"\n", at)
    return len(data) if found < 0 else found + 1


@st.composite
def mutated(draw, kind: str) -> bytes:
    data = bytearray(SEEDS[kind])
    for _ in range(draw(st.integers(1, 4))):
        op = draw(st.sampled_from(["flip", "cut", "insert", "delete", "duplicate", "row", "row"]))
        at = draw(st.integers(0, max(0, len(data) - 1)))
        if op == "flip" and data:
            data[at] ^= 1 << draw(st.integers(0, 7))
        elif op == "cut":
            del data[at:]
        elif op == "insert":
            data[at:at] = draw(st.sampled_from(INSERTS))
        elif op == "row" and kind != "parquet":
            row = draw(st.sampled_from(ROWS))
            at = _boundary(data, kind, at)
            data[at:at] = row + (b"," if kind == "json" else b"\n")
        elif op == "delete":
            del data[at : at + draw(st.integers(1, 64))]
        else:
            data[at:at] = data[at : at + draw(st.integers(1, 256))]
    return bytes(data)


def _prepare_like(kind: str, content: bytes) -> list[str]:
    """Read and scan the file as preparation does: the reason codes of its dropped rows, or a
    SourceError naming the file."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / f"rows.{kind}"
        path.write_bytes(content)
        try:
            source = open_source(str(path), cache_dir=Path(tmp) / "cache")
            reasons: list[str] = []
            for index, shard in enumerate(source.shards(target_bytes=256)):
                for _, record in shard.records(MAX_ROW_BYTES):
                    if isinstance(record, dict):
                        # ValueError is how preparation refuses `format: auto`, naming the file.
                        with contextlib.suppress(ValueError):
                            detect_format(record)
                settings_ = ScanSettings(max_row_bytes=MAX_ROW_BYTES)
                task = ShardTask(index, shard, 0, None, FORMATS[kind], {}, settings_, tmp)
                scan = scan_shard(task)
                reasons += list(scan.reasons.elements())
                assert scan.rows_in == scan.candidates + sum(scan.reasons.values())
            return reasons
        except SourceError as error:
            assert "rows." + kind in str(error)
            return ["SourceError"]


@pytest.mark.parametrize("kind", ["jsonl", "json", "csv", "parquet"])
def test_the_unmutated_seeds_read_cleanly(kind):
    assert _prepare_like(kind, SEEDS[kind]) == []


@pytest.mark.parametrize("kind", ["jsonl", "json", "csv", "parquet"])
@MALFORMED
@given(data=st.data())
def test_mutated_files_give_reason_coded_drops_or_one_source_error(kind, data):
    content = data.draw(mutated(kind))
    outcome = _prepare_like(kind, content)
    assert all(isinstance(reason, str) and reason for reason in outcome)
    for reason in sorted(set(outcome)) or ["clean"]:
        event(reason)  # --hypothesis-show-statistics lists how often each outcome came up


def test_row_errors_carry_codes_not_row_text():
    # The reason codes the readers add; details name sizes, never the row's text.
    error = RowError("too_long", f"{MAX_ROW_BYTES + 1} bytes > max_row_bytes {MAX_ROW_BYTES}")
    assert error.code == "too_long" and "x" not in error.detail.replace("max", "")
