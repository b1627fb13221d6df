"""read_row(): one row of a source read again by id through the data package's readers (builtin, local
JSONL, JSON, CSV, Parquet, S3), only the shard holding it parsed, and the source checked against the
fingerprint recorded when the version was prepared."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import pytest

from tasks.data import raw_rows, row_lookup
from tasks.data.row_lookup import read_row
from tasks.data.rows import DEFAULT_MAX_ROW_BYTES
from tasks.data.sources import open_source
from tasks.storage import store


def _fingerprint(uri: str, cache: Path) -> str:
    return open_source(uri, cache_dir=cache).fingerprint


def test_a_builtin_row_is_read_from_include_data(tmp_path):
    uri = "builtin:tuna_identity"
    found = read_row(uri, "tuna_identity.jsonl:3", _fingerprint(uri, tmp_path), tmp_path)
    assert found.state == "same" and "unchanged" in found.message
    assert json.loads(found.text)["instruction"] == "Please tell me: what is your name?"


def test_a_jsonl_row_its_unparseable_line_as_it_is_and_what_is_not_there(tmp_path):
    path = tmp_path / "rows.jsonl"
    path.write_bytes(b'{"text": "one"}\n\n{broken <b>\n{"text": "four"}\n')
    uri = path.as_uri()
    recorded = _fingerprint(uri, tmp_path)
    assert json.loads(read_row(uri, "rows.jsonl:4", recorded, tmp_path).text) == {"text": "four"}
    assert read_row(uri, "rows.jsonl:3", recorded, tmp_path).text == "{broken <b>"
    for missing in ("rows.jsonl:9", "other.jsonl:1"):
        found = read_row(uri, missing, recorded, tmp_path)
        assert found.text is None and found.message.startswith(f"the source has no row {missing} now")
    assert read_row(uri, "rows.jsonl", recorded, tmp_path).state == "unreadable"


def test_a_changed_source_is_said_to_have_changed_and_a_gone_one_to_be_unreadable(tmp_path):
    path = tmp_path / "rows.jsonl"
    path.write_text('{"text": "one"}\n{"text": "two"}\n')
    uri = path.as_uri()
    recorded = _fingerprint(uri, tmp_path)
    path.write_text('{"text": "new"}\n{"text": "two"}\n')
    found = read_row(uri, "rows.jsonl:1", recorded, tmp_path)
    assert found.state == "changed" and json.loads(found.text) == {"text": "new"}
    assert "may not be the one that was dropped" in found.message
    assert read_row(uri, "rows.jsonl:1", None, tmp_path).state == "unverified"
    path.unlink()
    gone = read_row(uri, "rows.jsonl:1", recorded, tmp_path)
    assert gone.state == "unreadable" and gone.text is None and "cannot be read now" in gone.message


def test_json_csv_and_parquet_rows_use_their_own_numbering(tmp_path):
    pq = pytest.importorskip("pyarrow.parquet")
    pa = pytest.importorskip("pyarrow")
    (tmp_path / "rows.json").write_text(json.dumps([{"text": "zero"}, {"text": "one"}]))
    (tmp_path / "rows.csv").write_text("text,label\nfirst,a\nsecond,b\n")
    pq.write_table(pa.table({"text": ["p1", "p2", "p3"]}), tmp_path / "rows.parquet", row_group_size=1)
    cases = [("rows.json", 0, {"text": "zero"}), ("rows.csv", 2, {"text": "second", "label": "b"})]
    cases.append(("rows.parquet", 3, {"text": "p3"}))
    for name, number, row in cases:
        found = read_row((tmp_path / name).as_uri(), f"{name}:{number}", None, tmp_path)
        assert json.loads(found.text) == row, name


def test_only_the_shard_holding_the_row_is_parsed(tmp_path, monkeypatch):
    path = tmp_path / "big.jsonl"
    path.write_text("".join(json.dumps({"text": f"row {i:04d}"}) + "\n" for i in range(1, 2001)))
    monkeypatch.setattr(row_lookup, "SEEK_BYTES", 1024)
    parsed = []
    monkeypatch.setattr(
        raw_rows,  # where JSONL lines are parsed
        "json",
        SimpleNamespace(loads=lambda raw: parsed.append(1) or json.loads(raw), JSONDecodeError=ValueError),
    )
    found = read_row(path.as_uri(), "big.jsonl:1990", None, tmp_path)
    assert json.loads(found.text) == {"text": "row 1990"} and 0 < len(parsed) < 50


def test_an_s3_source_is_read_through_the_store_mirror(s3_store_root, tmp_path):
    uri = store.join(s3_store_root, "sources", "chats.jsonl")
    store.backend_for(uri).write_bytes(uri, b'{"text": "a"}\n{"text": "<script>b</script>"}\n')
    found = read_row(uri, "chats.jsonl:2", _fingerprint(uri, tmp_path / "a"), tmp_path / "b")
    assert found.state == "same" and json.loads(found.text) == {"text": "<script>b</script>"}


def test_a_line_over_the_row_cap_is_described_not_shown_or_read_whole(tmp_path):
    path = tmp_path / "rows.jsonl"
    huge = json.dumps({"text": "z" * (DEFAULT_MAX_ROW_BYTES + 10)})
    path.write_text(f'{huge}\n{{"text": "two"}}\n')
    uri = path.as_uri()
    recorded = _fingerprint(uri, tmp_path)
    found = read_row(uri, "rows.jsonl:1", recorded, tmp_path)
    assert found.text == f"(not shown: {len(huge)} bytes > max_row_bytes {DEFAULT_MAX_ROW_BYTES})"
    assert json.loads(read_row(uri, "rows.jsonl:2", recorded, tmp_path).text) == {"text": "two"}
