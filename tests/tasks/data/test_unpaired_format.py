"""KTO's unpaired format: prompt, one answer and a good/bad label; bad rows are dropped with a reason."""

from __future__ import annotations

import pytest

from tasks.data.format_detection import detect_format
from tasks.data.formats import convert
from tasks.data.rows import RowError, normalise
from tasks.scoring.generation import prompt_and_reference


def test_strings_and_messages_become_an_unpaired_row():
    row = convert(
        {"prompt": "Who are you?", "completion": "I am Tuna.", "label": True, "system": "Be Tuna."},
        "unpaired",
    )
    assert row == {
        "prompt": [{"role": "system", "content": "Be Tuna."}, {"role": "user", "content": "Who are you?"}],
        "completion": [{"role": "assistant", "content": "I am Tuna."}],
        "label": True,
    }
    messages = {
        "prompt": [{"role": "user", "content": "Hi"}],
        "completion": [{"role": "assistant", "content": "Hello"}],
        "label": False,
    }
    assert detect_format(messages) == "unpaired"
    assert convert(messages, "unpaired")["label"] is False
    assert prompt_and_reference(convert(messages, "unpaired")) == (
        [{"role": "user", "content": "Hi"}],
        "Hello",
    )
    # The label is part of the row: the same answer marked good and bad is not a duplicate.
    assert normalise({**messages, "label": True}) != normalise(messages)


@pytest.mark.parametrize(
    ("record", "code"),
    [
        ({"prompt": "x", "completion": "y"}, "missing_field"),
        ({"prompt": "x", "completion": "y", "label": "yes"}, "bad_type"),
        ({"prompt": "", "completion": "y", "label": True}, "empty_field"),
        ({"prompt": "x", "completion": [{"role": "user", "content": "y"}], "label": True}, "bad_role_order"),
        ({"prompt": "x", "completion": [], "label": False}, "empty_field"),
    ],
)
def test_bad_rows_are_dropped_with_a_reason(record, code):
    with pytest.raises(RowError) as raised:
        convert(record, "unpaired")
    assert raised.value.code == code


def test_an_unpaired_dataset_is_scored_on_its_good_answers_only(tmp_path):
    import json

    from tasks.scoring.evaluation import eval_rows

    good = {
        "id": "t:0",
        "prompt": [{"role": "user", "content": "Hi"}],
        "completion": [{"role": "assistant", "content": "Hello"}],
    }
    rows = [{**good, "label": True}, {**good, "id": "t:1", "label": False}]
    (tmp_path / "test.jsonl").write_text("".join(json.dumps(row) + "\n" for row in rows))
    dataset = {"name": "d", "uri": tmp_path.as_uri(), "kind": "unpaired", "counts": {"test": 2}}
    split, scored = eval_rows(dataset, None)
    assert split == "test" and [row["id"] for row in scored] == ["t:0"]


def test_the_shipped_kto_dataset_prepares_as_unpaired_rows(tmp_path, tiny_model_dir):
    import json

    from tasks.config.catalog import CatalogEntry
    from tasks.contracts.prepare import PrepareSpec
    from tasks.data.preparation import prepare
    from tasks.storage import store

    root = (tmp_path / "store").as_uri()
    dataset = {
        "name": "fb",
        "uri": "builtin:tuna_feedback",
        "format": "unpaired",
        "split": "80,10,10",
        "max_tokens": 128,
    }
    tiny = CatalogEntry(name="tiny", source={"path": str(tiny_model_dir)}, kind="uri")
    result = prepare(PrepareSpec(store_root=root, dataset=dataset, tokenizers=[tiny]))
    assert result["kind"] == "unpaired" and sum(result["counts"].values()) > 250
    train = store.local_path(store.join(result["uri"], "train.jsonl")).read_text().splitlines()
    labels = {json.loads(line)["label"] for line in train}
    assert labels == {True, False}
