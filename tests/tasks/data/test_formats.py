from __future__ import annotations

import csv
import json
import re

import pytest

from tasks.config.dataset import DatasetConfig
from tasks.contracts.prepare import PrepareSpec
from tasks.data.format_detection import detect_format
from tasks.data.formats import convert
from tasks.data.preparation import prepare
from tasks.data.rows import RowError
from tasks.storage import store


def u(content):
    return {"role": "user", "content": content}


def a(content):
    return {"role": "assistant", "content": content}


def s(content):
    return {"role": "system", "content": content}


CALL = {"type": "function", "function": {"name": "weather", "arguments": {"city": "Oslo"}}}

# (format, source row, internal row)
ROUND_TRIPS = [
    (
        "alpaca",
        {
            "instruction": "And now?",
            "input": "",
            "output": "Bye",
            "system": "Be brief.",
            "history": [["Hi", "Hello"], ["How are you?", "Fine"]],
        },
        {
            "messages": [
                s("Be brief."),
                u("Hi"),
                a("Hello"),
                u("How are you?"),
                a("Fine"),
                u("And now?"),
                a("Bye"),
            ]
        },
    ),
    (
        "sharegpt",
        {
            "conversations": [
                {"from": "system", "value": "Use tools."},
                {"from": "human", "value": "Weather in Oslo?"},
                {
                    "from": "function_call",
                    "value": json.dumps({"name": "weather", "arguments": {"city": "Oslo"}}),
                },
                {"from": "observation", "value": "12C, rain"},
                {"from": "gpt", "value": "12C and rainy."},
            ]
        },
        {
            "messages": [
                s("Use tools."),
                u("Weather in Oslo?"),
                {"role": "assistant", "content": "", "tool_calls": [CALL]},
                {"role": "tool", "content": "12C, rain"},
                a("12C and rainy."),
            ]
        },
    ),
    (
        "moss",
        {
            "meta_instruction": "You are MOSS.",
            "chat": {
                "turn_2": {"Human": "<|Human|>: And 3+3?<eoh>\n", "MOSS": "<|MOSS|>: 6<eom>\n"},
                "turn_1": {
                    "Human": "<|Human|>: 2+2?<eoh>\n",
                    "Inner Thoughts": "x",
                    "MOSS": "<|MOSS|>: 4<eom>\n",
                },
            },
        },
        {"messages": [s("You are MOSS."), u("2+2?"), a("4"), u("And 3+3?"), a("6")]},
    ),
    (
        "guanaco",
        {"text": "### Human: Hi there### Assistant: Hello!### Human: Name?### Assistant: Guanaco."},
        {"messages": [u("Hi there"), a("Hello!"), u("Name?"), a("Guanaco.")]},
    ),
    (
        "messages",
        {"messages": [u("2+2?"), a("4")]},
        {"messages": [u("2+2?"), a("4")]},
    ),
    ("text", {"text": "Once upon a time."}, {"text": "Once upon a time."}),
    (
        "preference",
        {"prompt": "2+2?", "chosen": "4", "rejected": "5", "system": "Be right."},
        {"prompt": [s("Be right."), u("2+2?")], "chosen": [a("4")], "rejected": [a("5")]},
    ),
    (
        "openai_preference",
        {
            "input": {"messages": [s("Be right."), u("2+2?")], "tools": []},
            "preferred_output": [a("4")],
            "non_preferred_output": [a("5")],
        },
        {"prompt": [s("Be right."), u("2+2?")], "chosen": [a("4")], "rejected": [a("5")]},
    ),
]


@pytest.mark.parametrize(("fmt", "record", "expected"), ROUND_TRIPS, ids=[t[0] for t in ROUND_TRIPS])
def test_every_format_converts_to_the_exact_internal_row(fmt, record, expected):
    assert convert(record, fmt) == expected


@pytest.mark.parametrize(("fmt", "record", "expected"), ROUND_TRIPS, ids=[t[0] for t in ROUND_TRIPS])
def test_every_format_is_detected_from_its_keys(fmt, record, expected):
    assert detect_format(record) == fmt


def test_preference_chat_forms():
    explicit = {"prompt": [u("2+2?")], "chosen": [a("4")], "rejected": [a("5")]}
    assert convert(explicit, "preference") == explicit
    implicit = {
        "chosen": [u("Hi"), a("Hello"), u("2+2?"), a("4")],
        "rejected": [u("Hi"), a("Hello"), u("2+2?"), a("5")],
    }
    assert convert(implicit, "preference") == {
        "prompt": [u("Hi"), a("Hello"), u("2+2?")],
        "chosen": [a("4")],
        "rejected": [a("5")],
    }
    assert detect_format(implicit) == "preference"


def test_sharegpt_user_assistant_names_and_top_level_system():
    record = {
        "system": "Sys",
        "conversations": [{"from": "user", "value": "q"}, {"from": "assistant", "value": "r"}],
    }
    assert convert(record, "sharegpt") == {"messages": [s("Sys"), u("q"), a("r")]}


def test_guanaco_drops_an_unanswered_last_human_turn():
    record = {"text": "### Human: q1 ### Assistant: a1 ### Human: q2"}
    assert convert(record, "guanaco") == {"messages": [u("q1"), a("a1")]}


def test_messages_accept_tool_turns_after_an_assistant_turn():
    row = {
        "messages": [
            u("q"),
            {"role": "assistant", "content": "", "tool_calls": [CALL]},
            {"role": "tool", "content": "x"},
            a("r"),
        ]
    }
    assert convert(row, "messages") == row


def test_columns_rename_source_keys_before_detection_and_conversion():
    columns = {"instruction": "question", "output": "answer"}
    record = {"question": "2+2?", "answer": "4", "source": "web"}
    assert detect_format(record, columns) == "alpaca"
    assert convert(record, "alpaca", columns) == {"messages": [u("2+2?"), a("4")]}
    with pytest.raises(RowError, match="mapped from column 'answer'") as error:
        convert({"question": "2+2?"}, "alpaca", columns)
    assert error.value.code == "missing_field"


def test_columns_config_refuses_unknown_keys_and_keeps_descriptions():
    assert DatasetConfig(name="d", uri="x", columns={"chosen": "good", "rejected": "bad"}).columns
    with pytest.raises(ValueError, match="unknown keys"):
        DatasetConfig(name="d", uri="x", columns={"instrution": "question"})
    with pytest.raises(ValueError, match="extra"):
        DatasetConfig(name="d", uri="x", colums={})
    assert all(f.description for f in DatasetConfig.model_fields.values())


@pytest.mark.parametrize(
    "record",
    [
        {"instruction": "q", "output": "a", "messages": [u("q"), a("a")]},
        {"conversations": [], "chat": {}},
        {"chosen": "x", "rejected": "y", "messages": []},
    ],
)
def test_ambiguous_rows_ask_for_an_explicit_format(record):
    with pytest.raises(ValueError, match="set `format`"):
        detect_format(record)


def test_undetectable_rows_ask_for_format_and_columns():
    with pytest.raises(ValueError, match=r"set `format`.*`columns`"):
        detect_format({"question": "q", "answer": "a"})


BAD_ROWS = [
    ("alpaca", {"instruction": "q"}, "missing_field"),
    ("alpaca", {"instruction": "q", "output": " "}, "empty_field"),
    ("alpaca", {"instruction": "q", "output": "a", "history": [["only one"]]}, "bad_type"),
    ("alpaca", {"instruction": "q", "output": "a", "history": [["", "x"]]}, "empty_field"),
    ("sharegpt", {}, "missing_field"),
    ("sharegpt", {"conversations": "hi"}, "bad_type"),
    ("sharegpt", {"conversations": [{"from": "robot", "value": "x"}]}, "bad_role"),
    (
        "sharegpt",
        {"conversations": [{"from": "gpt", "value": "x"}, {"from": "human", "value": "y"}]},
        "bad_role_order",
    ),
    (
        "sharegpt",
        {"conversations": [{"from": "human", "value": ""}, {"from": "gpt", "value": "y"}]},
        "empty_field",
    ),
    (
        "sharegpt",
        {
            "conversations": [
                {"from": "human", "value": "q"},
                {"from": "observation", "value": "x"},
                {"from": "gpt", "value": "y"},
            ]
        },
        "bad_role_order",
    ),
    (
        "sharegpt",
        {"conversations": [{"from": "human", "value": "q"}, {"from": "function_call", "value": "{oops"}]},
        "bad_type",
    ),
    ("moss", {"chat": {"turn_1": {"Human": "<|Human|>: q<eoh>"}}}, "missing_field"),
    ("moss", {"chat": {"turn_1": {"Human": "<|Human|>: q<eoh>", "MOSS": "<|MOSS|>: <eom>"}}}, "empty_field"),
    ("moss", {"chat": {"turn_1": {"Human": 3, "MOSS": "a"}}}, "bad_type"),
    ("moss", {"chat": {"first": {"Human": "q", "MOSS": "a"}}}, "bad_type"),
    ("guanaco", {"text": "no markers"}, "missing_field"),
    ("guanaco", {"text": "### Assistant: a ### Human: q ### Assistant: b"}, "bad_role_order"),
    ("guanaco", {"text": "### Human: ### Assistant: a"}, "empty_field"),
    ("messages", {"messages": [{"role": "bot", "content": "x"}]}, "bad_role"),
    ("messages", {"messages": [u("q"), {"role": "tool", "content": "x"}]}, "bad_role_order"),
    ("messages", {"messages": [u("q"), a(5)]}, "bad_type"),
    ("text", {"text": 5}, "bad_type"),
    ("text", {"text": "  "}, "empty_field"),
    ("text", {}, "missing_field"),
    ("preference", {"prompt": "q", "chosen": "a"}, "missing_field"),
    ("preference", {"prompt": "q", "chosen": "a", "rejected": ""}, "empty_field"),
    ("preference", {"prompt": "q", "chosen": "a", "rejected": 3}, "bad_type"),
    ("preference", {"prompt": "q", "chosen": [u("a")], "rejected": "b"}, "bad_role_order"),
    ("preference", {"prompt": [a("q")], "chosen": "a", "rejected": "b"}, "bad_role_order"),
    (
        "preference",
        {"prompt": "q", "chosen": [{"role": "judge", "content": "a"}], "rejected": "b"},
        "bad_role",
    ),
    ("preference", {"chosen": [u("x"), a("a")], "rejected": [u("y"), a("b")]}, "missing_field"),
    ("openai_preference", {"preferred_output": [a("4")], "non_preferred_output": [a("5")]}, "missing_field"),
    (
        "openai_preference",
        {"input": {"tools": []}, "preferred_output": [a("4")], "non_preferred_output": [a("5")]},
        "missing_field",
    ),
    (
        "openai_preference",
        {"input": {"messages": [u("q")]}, "preferred_output": "4", "non_preferred_output": [a("5")]},
        "bad_type",
    ),
    (
        "openai_preference",
        {"input": {"messages": [u("q")]}, "preferred_output": [u("4")], "non_preferred_output": [a("5")]},
        "bad_role_order",
    ),
]


@pytest.mark.parametrize(("fmt", "record", "code"), BAD_ROWS)
def test_bad_rows_get_the_right_reason_code(fmt, record, code):
    with pytest.raises(RowError) as error:
        convert(record, fmt)
    assert error.value.code == code


def test_csv_file_prepares_with_row_ids_and_counts(tmp_path, store_root):
    path = tmp_path / "qa.csv"
    with open(path, "w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["question", "context", "answer"])
        writer.writerow(["Capital of France?", "", "Paris"])
        writer.writerow(["Multi\nline, quoted?", "ctx", "yes"])
        writer.writerow(["No answer", "", ""])
        writer.writerow(["Ünïcode?", "", "ja"])
    dataset = {
        "name": "qa",
        "uri": str(path),
        "columns": {"instruction": "question", "input": "context", "output": "answer"},
        "split": "100,0,0",
        "max_drop_ratio": 0.5,
    }
    result = prepare(PrepareSpec(store_root=store_root, dataset=dataset))
    assert result["format"] == "alpaca" and result["kind"] == "chat"
    assert result["counts"] == {"train": 3, "validation": 0, "test": 0}
    assert result["drop_reasons"] == {"empty_field": 1}
    rejected = store.local_path(store.join(result["uri"], "rejected.jsonl")).read_text()
    assert json.loads(rejected)["id"] == "qa.csv:3"
    train = store.local_path(store.join(result["uri"], "train.jsonl")).read_text().splitlines()
    rows = {r["id"]: r for r in map(json.loads, train)}
    assert set(rows) == {"qa.csv:1", "qa.csv:2", "qa.csv:4"}
    assert rows["qa.csv:2"]["messages"][0]["content"] == "Multi\nline, quoted?\n\nctx"
    again = prepare(
        PrepareSpec(
            store_root=store_root, dataset={**dataset, "columns": {**dataset["columns"], "input": "x"}}
        )
    )
    assert again["version"] != result["version"], "the column mapping is part of the content version"


def test_parquet_and_mixed_glob_prepare_with_row_ids_and_counts(tmp_path, store_root):
    pa = pytest.importorskip("pyarrow")
    pq = pytest.importorskip("pyarrow.parquet")
    rows = [
        {"conversations": [{"from": "human", "value": f"q{i}"}, {"from": "gpt", "value": f"a{i}"}]}
        for i in range(2500)
    ]
    rows[1200]["conversations"][1]["value"] = ""
    (tmp_path / "data").mkdir()
    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "data" / "part-0.parquet", row_group_size=1000)
    with open(tmp_path / "data" / "part-1.jsonl", "w") as handle:
        handle.write(
            json.dumps({"conversations": [{"from": "human", "value": "x"}, {"from": "gpt", "value": "y"}]})
        )
    dataset = {"name": "chat", "uri": str(tmp_path / "data" / "part-*"), "split": "80,10,10"}
    result = prepare(PrepareSpec(store_root=store_root, dataset=dataset))
    assert result["format"] == "sharegpt"
    assert sum(result["counts"].values()) == 2500 and result["dropped"] == 1
    rejected = store.local_path(store.join(result["uri"], "rejected.jsonl")).read_text()
    assert json.loads(rejected) == {
        "id": "part-0.parquet:1201",
        "reason": "empty_field",
        "detail": "value",
        "source": 0,
    }
    ids = set()
    for name in ("train", "validation", "test"):
        with open(store.local_path(store.join(result["uri"], f"{name}.jsonl"))) as handle:
            ids |= {json.loads(line)["id"] for line in handle}
    assert "part-0.parquet:1" in ids and "part-0.parquet:2500" in ids and "part-1.jsonl:1" in ids


def test_preference_data_prepares_as_preference_kind(tmp_path, store_root):
    path = tmp_path / "pairs.json"
    path.write_text(json.dumps([{"prompt": f"q{i}", "chosen": "good", "rejected": "bad"} for i in range(10)]))
    result = prepare(PrepareSpec(store_root=store_root, dataset={"name": "pairs", "uri": str(path)}))
    assert result["format"] == "preference" and result["kind"] == "preference"
    assert sum(result["counts"].values()) == 10


def test_sft_refuses_preference_data_before_loading_anything(tmp_path):
    from tasks.runtime.errors import StepError
    from tasks.training.trainer import to_trl_rows, train
    from tests.tasks.training.test_train_types import make_job

    # Nothing under these paths exists: the refusal comes before anything is loaded.
    job = make_job(tmp_path, tmp_path / "model", tmp_path / "pairs", "preference", "sft", "lora")
    with pytest.raises(
        StepError, match=re.escape("holds preference rows, but training.type 'sft' trains on chat")
    ):
        train(job)
    row = {"id": "x", "prompt": [u("q")], "chosen": [a("a")], "rejected": [a("b")]}
    assert to_trl_rows([row], "preference") == [
        {"prompt": [u("q")], "chosen": [a("a")], "rejected": [a("b")]}
    ]


def test_an_openai_dpo_file_prepares_as_preference_rows(tmp_path, store_root):
    path = tmp_path / "pairs.jsonl"
    rows = [
        {
            "input": {"messages": [u(f"What is {i} plus {i}?")]},
            "preferred_output": [a(str(2 * i))],
            "non_preferred_output": [a(str(2 * i + 1))],
        }
        for i in range(4)
    ]
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    result = prepare(
        PrepareSpec(store_root=store_root, dataset={"name": "pairs", "uri": str(path), "split": "100,0,0"})
    )
    assert (result["format"], result["kind"]) == ("openai_preference", "preference")
    assert result["counts"]["train"] == 4
    train = [
        json.loads(line)
        for line in store.local_path(store.join(result["uri"], "train.jsonl")).read_text().splitlines()
    ]
    assert {r["id"]: r["chosen"] for r in train}["pairs.jsonl:2"] == [a("2")]  # ids count lines from 1
