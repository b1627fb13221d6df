from __future__ import annotations

import json

import pytest

from tasks import store
from tasks.config import DatasetConfig
from tasks.data import convert, read_lines, split, validate
from tasks.prepare_dataset import prepare

GOOD_ROWS = [
    {"instruction": "Say hi", "input": "", "output": "hi"},
    {"instruction": "Translate", "input": "chat", "output": "cat", "system": "You translate."},
    {"messages": [{"role": "user", "content": "2+2?"}, {"role": "assistant", "content": "4"}]},
]


def test_alpaca_and_messages_convert_to_the_internal_schema():
    assert convert(GOOD_ROWS[0], "alpaca") == {
        "messages": [{"role": "user", "content": "Say hi"}, {"role": "assistant", "content": "hi"}]
    }
    converted = convert(GOOD_ROWS[1], "alpaca")["messages"]
    assert converted[0] == {"role": "system", "content": "You translate."}
    assert converted[1]["content"] == "Translate\n\nchat"
    assert convert(GOOD_ROWS[2], "messages") == {"messages": GOOD_ROWS[2]["messages"]}
    assert convert({"text": "raw"}, "text") == {"text": "raw"}


def _write_fixture(path):
    lines = [
        json.dumps({"instruction": "q1", "input": "", "output": "a1"}),  # good
        "{not json",  # unparseable
        json.dumps({"instruction": "q2", "input": ""}),  # missing output
        json.dumps({"instruction": "  ", "input": "", "output": "a"}),  # empty instruction
        json.dumps({"instruction": "Q1 ", "input": "", "output": "a1"}),  # duplicate of row 1 after folding
        json.dumps({"instruction": "q3", "input": "", "output": 5}),  # wrong type
        json.dumps({"instruction": "q4", "input": "", "output": "a4"}),  # good
    ]
    raw = ("\n".join(lines) + "\n").encode() + b'{"instruction": "\xff\xfe", "output": "x"}\n'  # not UTF-8
    path.write_bytes(raw)
    return {
        "rows.jsonl:2": "unparseable",
        "rows.jsonl:3": "missing_field",
        "rows.jsonl:4": "empty_field",
        "rows.jsonl:5": "duplicate",
        "rows.jsonl:6": "bad_type",
        "rows.jsonl:8": "not_utf8",
    }


def test_every_bad_row_is_dropped_with_its_reason_and_every_good_row_kept(tmp_path):
    expected = _write_fixture(tmp_path / "rows.jsonl")
    result = validate(read_lines(tmp_path / "rows.jsonl"), "alpaca")
    assert {r["id"]: r["reason"] for r in result.rejected} == expected
    assert [r["id"] for r in result.kept] == ["rows.jsonl:1", "rows.jsonl:7"]


def test_bad_role_order_is_rejected():
    result = validate(
        [("r1", {"messages": [{"role": "assistant", "content": "x"}, {"role": "user", "content": "y"}]})],
        "messages",
    )
    assert result.rejected[0]["reason"] == "bad_role_order"


def test_split_is_deterministic_disjoint_and_exact():
    rows = validate(((f"r{i}", {"text": f"row {i}"}) for i in range(1000)), "text").kept
    first, again = split(rows, (80, 10, 10), seed=3), split(list(reversed(rows)), (80, 10, 10), seed=3)
    assert first == again
    ids = {name: {r["id"] for r in part} for name, part in first.items()}
    assert [len(ids[n]) for n in ("train", "validation", "test")] == [800, 100, 100]
    assert not (
        ids["train"] & ids["validation"] or ids["train"] & ids["test"] or ids["validation"] & ids["test"]
    )
    assert split(rows, (80, 10, 10), seed=4) != first


def test_prepare_writes_versioned_splits_reports_and_is_reused(tmp_path, store_root):
    _write_fixture(tmp_path / "rows.jsonl")
    dataset = {"name": "d", "uri": str(tmp_path / "rows.jsonl"), "split": "50,0,50", "max_drop_ratio": 0.9}
    result = prepare({"store_root": store_root, "dataset": dataset})
    assert result["counts"] == {"train": 1, "validation": 0, "test": 1}
    assert result["drop_reasons"]["duplicate"] == 1
    report = store.read_json(store.join(result["uri"], "validation_report.json"))
    assert report["rows_in"] == 8 and report["rows_dropped"] == 6
    rejected = store.local_path(store.join(result["uri"], "rejected.jsonl")).read_text()
    assert "q2" not in rejected, "row text must not be copied into the rejected-rows file"
    assert store.verify(result["uri"]) == []
    assert prepare({"store_root": store_root, "dataset": dataset}) == result
    changed = prepare({"store_root": store_root, "dataset": {**dataset, "seed": 7}})
    assert changed["version"] != result["version"]


def test_over_threshold_drop_ratio_fails_with_top_reasons_and_examples(tmp_path, store_root):
    from tasks.step import StepError

    _write_fixture(tmp_path / "rows.jsonl")
    dataset = DatasetConfig(name="d", uri=str(tmp_path / "rows.jsonl"), max_drop_ratio=0.2)
    with pytest.raises(StepError) as error:
        prepare({"store_root": store_root, "dataset": dataset.model_dump()})
    message = str(error.value)
    assert "6 of 8 rows dropped (75%), above max_drop_ratio 20%" in message
    assert "Top reasons:" in message and "rows.jsonl:2" in message


def test_builtin_demo_dataset_prepares_cleanly(store_root):
    result = prepare({"store_root": store_root, "dataset": {"name": "tuna", "uri": "builtin:tuna_identity"}})
    assert result["dropped"] == 0 and sum(result["counts"].values()) == 294
