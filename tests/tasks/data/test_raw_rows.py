"""tasks.data.raw_rows and the readers using it: malformed files give reason-coded rows or one SourceError
naming the file, in bounded memory (deep nesting, BOMs, oversized lines, unclosed quotes, truncation)."""

from __future__ import annotations

import io
import json
import pickle

import pytest

from tasks.data import raw_rows
from tasks.data.rows import RowError
from tasks.data.sources import SourceError, open_source

DEEP = "[" * 100_000 + "]" * 100_000


def _read(path, max_row_bytes=1 << 20, target_bytes=64 << 20):
    out = []
    source = open_source(str(path), cache_dir=path.parent / "cache")
    for shard in source.shards(target_bytes):
        shard = pickle.loads(pickle.dumps(shard))
        for row_id, record in shard.records(max_row_bytes):
            out.append(
                (row_id, f"{record.code}: {record.detail}" if isinstance(record, RowError) else record)
            )
    return out


def test_a_jsonl_row_nested_100000_deep_is_dropped_as_too_deep_and_reading_goes_on(tmp_path):
    path = tmp_path / "deep.jsonl"
    path.write_text('{"a": 1}\n{"a": ' + DEEP + "}\n" + DEEP + '\n{"a": 4}\n')
    rows = _read(path)
    assert [row_id for row_id, _ in rows] == ["deep.jsonl:1", "deep.jsonl:2", "deep.jsonl:3", "deep.jsonl:4"]
    assert rows[0][1] == {"a": 1} and rows[3][1] == {"a": 4}
    assert rows[1][1].startswith("too_deep") and rows[2][1].startswith("too_deep")


def test_a_json_list_element_nested_too_deep_drops_only_that_row(tmp_path):
    path = tmp_path / "deep.json"
    path.write_text('[{"a": 0}, {"b": "]]}", "c": ' + DEEP + '}, {"a": 2}]')
    rows = _read(path)
    assert rows[0] == ("deep.json:0", {"a": 0}) and rows[2] == ("deep.json:2", {"a": 2})
    assert rows[1][0] == "deep.json:1" and rows[1][1].startswith("too_deep")
    (tmp_path / "top.json").write_text('{"a": ' * 100_000 + "1" + "}" * 100_000)  # not a list at all
    with pytest.raises(SourceError, match=r"top\.json"):
        _read(tmp_path / "top.json")


@pytest.mark.parametrize(
    "name, content, first",
    [
        ("bom.jsonl", '{"a": 1}\n{"a": 2}\n', {"a": 1}),
        ("bom.json", '[{"a": 1}, {"a": 2}]', {"a": 1}),
        ("bom.csv", "a\n1\n2\n", {"a": "1"}),
    ],
)
def test_a_utf8_bom_is_skipped_and_the_first_row_kept(tmp_path, name, content, first):
    path = tmp_path / name
    path.write_bytes(b"\xef\xbb\xbf" + content.encode())
    rows = _read(path)
    assert len(rows) == 2 and rows[0][1] == first


def test_an_oversized_jsonl_line_is_too_long_with_its_size_and_the_next_rows_keep_their_numbers(tmp_path):
    path = tmp_path / "big.jsonl"
    huge = json.dumps({"text": "x" * 5000})
    path.write_text(f'{{"a": 1}}\n{huge}\r\n{{"a": 3}}\n{huge}')  # the last line has no newline
    rows = _read(path, max_row_bytes=1024)
    assert rows == [
        ("big.jsonl:1", {"a": 1}),
        ("big.jsonl:2", f"too_long: {len(huge)} bytes > max_row_bytes 1024"),
        ("big.jsonl:3", {"a": 3}),
        ("big.jsonl:4", f"too_long: {len(huge)} bytes > max_row_bytes 1024"),
    ]
    # Cut into small shards, the huge lines straddle shard boundaries and are still read once each.
    assert _read(path, max_row_bytes=1024, target_bytes=700) == rows
    assert [r for _, r in _read(path, max_row_bytes=8192)][1] == {"text": "x" * 5000}


def test_an_oversized_line_is_never_held_whole():
    # A line of 10 MiB read with a 1 KiB cap: no read returns more than the cap plus its line ending.
    class Handle(io.BytesIO):
        largest = 0

        def readline(self, size=-1):
            line = super().readline(size)
            Handle.largest = max(Handle.largest, len(line))
            return line

    handle = Handle(b"x" * (10 << 20) + b"\n{}\n")
    lines = list(raw_rows.jsonl_lines(handle, None, 0, 1024))
    assert [type(line) for line in lines] == [RowError, bytes]
    assert Handle.largest <= raw_rows.CHUNK


def test_a_csv_with_an_unclosed_quote_is_refused_naming_the_file_within_the_row_cap(tmp_path):
    path = tmp_path / "quotes.csv"
    path.write_text('text\n"ok"\n"never closed\n' + "more,text\n" * 500)
    with pytest.raises(SourceError, match=r"quotes\.csv.*check its quoting.*max_row_bytes"):
        _read(path, max_row_bytes=1024)


def test_a_truncated_parquet_file_is_refused_naming_the_file(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    path = tmp_path / "rows.parquet"
    pq.write_table(pa.table({"text": [f"row {i}" for i in range(100)]}), path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(SourceError, match=r"rows\.parquet.*not a readable Parquet file"):
        _read(path)


def test_json_list_structure_errors_name_what_is_wrong():
    assert list(raw_rows.json_list_rows(" [ ] ", 100)) == []
    assert list(raw_rows.json_list_rows('[1, {"a": [2]}]', 100)) == [1, {"a": [2]}]
    for bad in ("[1,]", "[1 2]", "[1] x", '{"a": 1}', "[[[", ""):
        with pytest.raises(raw_rows.MalformedFile):
            list(raw_rows.json_list_rows(bad, 100))
    too_long = list(raw_rows.json_list_rows('["' + "é" * 100 + '", 2]', 100))
    assert too_long[0].code == "too_long" and too_long[0].detail.startswith("202 bytes") and too_long[1] == 2


def test_a_parquet_row_over_max_row_bytes_is_too_long_and_the_others_kept(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    path = tmp_path / "rows.parquet"
    texts = ["short", "é" * 3000, "also short"]  # 6000 bytes of UTF-8 in the middle row
    pq.write_table(pa.table({"text": texts, "n": [1, 2, 3]}), path)
    rows = _read(path, max_row_bytes=4096)
    assert rows[0] == ("rows.parquet:1", {"text": "short", "n": 1})
    assert rows[1][0] == "rows.parquet:2" and rows[1][1].startswith("too_long: 601")
    assert rows[2] == ("rows.parquet:3", {"text": "also short", "n": 3})
    assert [r for _, r in _read(path, max_row_bytes=8192)][1] == {"text": "é" * 3000, "n": 2}
