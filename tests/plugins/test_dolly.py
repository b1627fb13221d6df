"""The example data plugin plugins/data/dolly.py: Dolly 15k rows and the drop_refusals filter."""

from __future__ import annotations

import pytest

from tasks.data import plugins as data_plugins
from tasks.data.format_detection import detect_format
from tasks.data.formats import convert
from tasks.data.plugins import apply_filters, get_format, kind_of
from tasks.data.rows import RowError


@pytest.fixture(autouse=True)
def clean_registry(monkeypatch):
    monkeypatch.delenv(data_plugins.ENV_VAR, raising=False)
    data_plugins._reset_for_tests()
    yield
    data_plugins._reset_for_tests()


def u(content):
    return {"role": "user", "content": content}


def a(content):
    return {"role": "assistant", "content": content}


def dolly(instruction="When was Oslo founded?", context="", response="Around 1040.", category="open_qa"):
    return {"instruction": instruction, "context": context, "response": response, "category": category}


ROUND_TRIPS = [
    (dolly(), {"messages": [u("When was Oslo founded?"), a("Around 1040.")]}),
    (
        dolly("Summarise the passage.", "  Oslo is the capital of Norway.\n", "Oslo is Norway's capital."),
        {
            "messages": [
                u("Summarise the passage.\n\nContext:\nOslo is the capital of Norway."),
                a("Oslo is Norway's capital."),
            ]
        },
    ),
    (dolly(context="   "), {"messages": [u("When was Oslo founded?"), a("Around 1040.")]}),
    (
        {"instruction": "Name a fjord.", "response": "Geirangerfjord."},  # no context, no category
        {"messages": [u("Name a fjord."), a("Geirangerfjord.")]},
    ),
]


@pytest.mark.parametrize("record, expected", ROUND_TRIPS)
def test_dolly_rows_convert_to_chat(record, expected):
    assert convert(record, "dolly") == expected


def test_the_plugin_registers_a_chat_format_and_the_filter():
    plugin = get_format("dolly")
    assert plugin.kind == kind_of("dolly") == "chat"
    assert plugin.keys == ("instruction", "context", "response") and plugin.description
    assert "drop_refusals" in data_plugins.filter_names()


def test_dolly_rows_are_detected_from_their_keys():
    assert detect_format(dolly()) == "dolly"
    columns = {"instruction": "question", "response": "answer"}
    assert detect_format({"question": "q", "context": "", "answer": "a"}, columns) == "dolly"
    assert detect_format({"instruction": "i", "response": "r"}) == "alpaca"  # no context key: not Dolly
    assert detect_format({"instruction": "i", "input": "", "output": "o"}) == "alpaca"


def test_columns_map_other_column_names():
    record = {"prompt_text": "Name a fjord.", "context": "", "reply": "Geirangerfjord."}
    columns = {"instruction": "prompt_text", "response": "reply"}
    assert convert(record, "dolly", columns) == {"messages": [u("Name a fjord."), a("Geirangerfjord.")]}


@pytest.mark.parametrize(
    "record, code",
    [
        ({"instruction": "i", "context": ""}, "missing_field"),
        (dolly(instruction="  "), "empty_field"),
        (dolly(instruction=""), "empty_field"),
        (dolly(response=""), "empty_field"),
        (dolly(instruction=None), "missing_field"),
        (dolly(context=["a"]), "bad_type"),
        (dolly(response=42), "bad_type"),
    ],
)
def test_bad_rows_get_the_right_reason_code(record, code):
    with pytest.raises(RowError) as error:
        convert(record, "dolly")
    assert error.value.code == code


def test_a_missing_mapped_response_names_the_source_column():
    with pytest.raises(RowError, match="mapped from column 'reply'") as error:
        convert({"instruction": "i", "context": ""}, "dolly", {"response": "reply"})
    assert error.value.code == "missing_field"


def chat(answer, *earlier):
    return {"messages": [*earlier, u("Can you help?"), a(answer)]}


@pytest.mark.parametrize(
    "answer",
    [
        "As an AI language model, I cannot do that.",
        "  as an ai language model I have no opinions.",
        "I'm sorry, but I can't help with that.",
        "I'm sorry but I cannot share that.",
        "I’m sorry, but I can’t do that.",
        "I cannot help with that request.",
        "\nI CANNOT HELP WITH hacking.",
    ],
)
def test_drop_refusals_drops_canned_refusals(answer):
    assert apply_filters(chat(answer), ["drop_refusals"]) == "refusal"


@pytest.mark.parametrize(
    "answer",
    [
        "Sure, Oslo was founded around 1040.",
        "I'm sorry to hear that; here is what you can do.",
        "Honestly, as an AI language model would say, it depends.",  # not at the start
        "I cannot stress this enough: back up your data.",
    ],
)
def test_drop_refusals_keeps_real_answers(answer):
    assert apply_filters(chat(answer), ["drop_refusals"]) is None


def test_drop_refusals_looks_at_the_last_answer():
    earlier = [u("Hi"), a("As an AI language model, hello.")]
    assert apply_filters(chat("Yes, gladly.", *earlier), ["drop_refusals"]) is None
    earlier = [u("Hi"), a("Hello.")]
    assert apply_filters(chat("I cannot help with that.", *earlier), ["drop_refusals"]) == "refusal"


def test_drop_refusals_on_other_kinds():
    assert apply_filters({"text": "As an AI language model, I write text."}, ["drop_refusals"]) is None
    pair = {"prompt": [u("Do it")], "chosen": [a("Done.")], "rejected": [a("I cannot help with that.")]}
    assert apply_filters(pair, ["drop_refusals"]) is None  # a refused rejected answer is the point
    pair["chosen"] = [a("As an AI language model, no.")]
    assert apply_filters(pair, ["drop_refusals"]) == "refusal"


def test_converted_rows_go_through_the_filter():
    rows = [dolly(), dolly("Say hi.", "", "I'm sorry, but I can't."), dolly("Say bye.", "", "Bye!")]
    converted = [convert(row, detect_format(row)) for row in rows]
    assert [apply_filters(row, ["drop_refusals"]) for row in converted] == [None, "refusal", None]
