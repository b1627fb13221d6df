"""Uploaded files: the checks, the stored bytes and record, and the dataset registration."""

from __future__ import annotations

import json

import pytest

from tasks.data import dataset_registry
from tasks.openai_api import files
from tasks.openai_api.objects import ApiError

CHAT = {"messages": [{"role": "user", "content": "Name?"}, {"role": "assistant", "content": "Tuna."}]}
DPO = {
    "input": {"messages": [{"role": "user", "content": "Name?"}]},
    "preferred_output": [{"role": "assistant", "content": "Tuna."}],
    "non_preferred_output": [{"role": "assistant", "content": "Cod."}],
}


def jsonl(*rows) -> bytes:
    return "".join((row if isinstance(row, str) else json.dumps(row)) + "\n" for row in rows).encode()


def test_a_chat_file_is_stored_registered_and_listed(store_root):
    data = jsonl(CHAT, "", CHAT)
    stored = files.upload(store_root, "train.jsonl", "fine-tune", data)
    assert stored.id.startswith("file-") and stored.object == "file"
    assert (stored.bytes, stored.filename, stored.purpose) == (len(data), "train.jsonl", "fine-tune")
    assert files.content(store_root, stored.id) == data
    record = files.record(store_root, stored.id)
    assert (record["kind"], record["format"], record["rows"]) == ("chat", "messages", 2)
    registered = dataset_registry.get(store_root, stored.id)
    assert (registered["uri"], registered["format"]) == (record["uri"], "messages")
    assert [f.id for f in files.listing(store_root)] == [stored.id]
    assert files.get(store_root, stored.id) == stored


def test_a_dpo_file_is_read_as_openai_preference(store_root):
    stored = files.upload(store_root, "pairs.jsonl", "fine-tune", jsonl(DPO, DPO))
    assert files.record(store_root, stored.id)["format"] == "openai_preference"
    assert dataset_registry.get(store_root, stored.id)["format"] == "openai_preference"


@pytest.mark.parametrize(
    ("data", "mentions"),
    [
        (jsonl(CHAT, "{not json"), "line 2 is not JSON"),
        (jsonl(CHAT, [1, 2]), "line 2 is a JSON list"),
        (jsonl({"prompt": "x"}), "line 1 is neither a chat row"),
        (jsonl(CHAT, DPO), "line 2 is not a valid chat row (missing_field"),
        (jsonl({"messages": [{"role": "bot", "content": "x"}]}), "line 1 is not a valid chat row (bad_role"),
        (b"\n\n", "holds no rows"),
        (b"\xff\xfe", "not UTF-8"),
    ],
)
def test_a_bad_file_is_refused_naming_its_line_and_nothing_is_stored(store_root, data, mentions):
    with pytest.raises(ApiError) as refused:
        files.upload(store_root, "bad.jsonl", "fine-tune", data)
    assert refused.value.status == 400 and refused.value.param == "file"
    assert mentions in refused.value.message
    assert files.listing(store_root) == []
    assert dataset_registry.registered_names(store_root) == []


def test_other_purposes_and_oversized_files_are_refused(store_root, monkeypatch):
    with pytest.raises(ApiError, match="purpose: 'batch' is not supported") as refused:
        files.upload(store_root, "x.jsonl", "batch", jsonl(CHAT))
    assert refused.value.param == "purpose"
    monkeypatch.setenv(files.MAX_MB_ENV, "0.00001")
    with pytest.raises(ApiError, match="over this deployment's limit") as refused:
        files.upload(store_root, "x.jsonl", "fine-tune", jsonl(CHAT))
    assert refused.value.code == "file_too_large"


@pytest.mark.parametrize("file_id", ["file-nope", "../etc", "file-" + "a" * 5000, "ftjob-1"])
def test_an_unknown_file_is_404(store_root, file_id):
    with pytest.raises(ApiError) as refused:
        files.get(store_root, file_id)
    assert refused.value.status == 404 and refused.value.body()["error"]["code"] == "not_found"
