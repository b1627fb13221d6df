"""The Datasets pages' view models on a store written by the dataset registry and the prepare step's
own writers: registered and prepared-only datasets, revisions, a version's counts, token lengths and drop
reasons, rejected rows by id and reason (never text), paging, and one row opened by id."""

from __future__ import annotations

import json

import pytest

from tasks.console import dataset_rows, dataset_versions, datasets
from tasks.data.length_stats import LengthHistogram
from tasks.data.prep_report import validation_report
from tasks.storage import layout, store
from tests.fixtures import registry_store as fx


@pytest.fixture(scope="module")
def root(tmp_path_factory) -> str:
    root = (tmp_path_factory.mktemp("datasets") / "store").as_uri()
    fx.build_datasets(root)
    return root


def test_the_index_has_registered_and_prepared_only_datasets(root):
    index = datasets.datasets_index(root)
    [tuna] = index.registered
    assert (tuna.name, tuna.revision, tuna.prepared_versions) == ("tuna", 2, 1)
    assert tuna.latest_version == fx.VERSION
    assert tuna.latest_counts == {"train": 8, "validation": 1, "test": 1}
    [scratch] = index.prepared_only
    assert (scratch.name, scratch.latest_version) == (fx.UNREGISTERED, fx.UNREGISTERED_VERSION)


def test_a_registered_dataset_has_its_definition_revisions_and_versions(root):
    page = datasets.dataset_page(root, fx.DATASET)
    assert page.registered and page.definition["max_tokens"] == 64 and page.source == "data/chats.jsonl"
    assert [(r.revision, r.note, r.changed) for r in page.revisions] == [
        (2, "cap the length", ["max_tokens"]),
        (1, "first", []),
    ]
    [version] = page.versions
    assert (version.version, version.state, version.dropped) == (fx.VERSION, "committed", 4)


def test_a_prepared_only_dataset_has_versions_and_no_definition(root):
    page = datasets.dataset_page(root, fx.UNREGISTERED)
    assert not page.registered and page.definition is None and page.revisions == []
    assert [v.version for v in page.versions] == [fx.UNREGISTERED_VERSION]


@pytest.mark.parametrize("name", ["nope", "..", "Tuna", "tuna/../tuna"])
def test_names_the_store_does_not_list_have_no_page(root, name):
    assert datasets.dataset_page(root, name) is None
    assert dataset_versions.dataset_version(root, name, fx.VERSION) is None


def test_a_version_has_counts_lengths_reasons_card_and_rejected_ids_without_text(root):
    page = dataset_versions.dataset_version(root, fx.DATASET, fx.VERSION)
    assert page.summary.counts == {"train": 8, "validation": 1, "test": 1} and page.rows_in == 14
    reasons = [(d.reason, d.count) for d in page.drop_reasons]
    assert reasons == [("duplicate", 2), ("bad_role", 1), ("too_long", 1)]
    [lengths] = page.token_lengths
    assert lengths.tokenizer == "tiny" and lengths.count == 10 and lengths.min <= lengths.p50 <= lengths.max
    chart = page.token_length_chart
    assert chart["labels"] == ["27–31", "32–38"] and chart["series"] == [{"label": "tiny", "values": [1, 9]}]
    assert page.has_histogram and not page.show_picture, "the bins are drawn; the picture is not needed"
    assert "# tuna (version 0a1b2c3d4e5f6789)" in page.card
    assert [(r.id, r.reason) for r in page.rejected.rows] == [
        ("chats.jsonl:11", "duplicate"),
        ("chats.jsonl:12", "duplicate"),
        ("chats.jsonl:13", "too_long"),
        ("chats.jsonl:14", "bad_role"),
    ]
    dumped = page.model_dump_json()
    assert fx.SECRET not in dumped and "same as chats.jsonl:1" not in dumped  # no row text, no detail


def test_rejected_rows_are_paged_and_filtered_by_reason(tmp_path):
    root = (tmp_path / "store").as_uri()
    rejected = [
        {"id": f"big.jsonl:{i}", "reason": "too_long" if i % 3 else "duplicate", "detail": "x", "source": 0}
        for i in range(1, 121)
    ]
    fx.prepare_version(root, "big", "v1", {"train": [fx._row("big.jsonl:0", "kept")]}, rejected)
    first = dataset_rows.rejected_page(root, "big", "v1")
    assert len(first.rows) == 50 and first.has_next and first.rows[0].id == "big.jsonl:1"
    last = dataset_rows.rejected_page(root, "big", "v1", page=3)
    assert len(last.rows) == 20 and not last.has_next and last.rows[-1].id == "big.jsonl:120"
    duplicates = dataset_rows.rejected_page(root, "big", "v1", reason="duplicate")
    assert len(duplicates.rows) == 40 and not duplicates.has_next
    assert {r.reason for r in duplicates.rows} == {"duplicate"}


def test_one_row_is_opened_by_id(root):
    dropped = dataset_versions.version_row(root, fx.DATASET, fx.VERSION, "chats.jsonl:11")
    assert dropped.rejected and dropped.reason == "duplicate" and dropped.detail == "same as chats.jsonl:1"
    assert dropped.source == fx.source_uri(root) and dropped.source_state == "same"
    assert f"{fx.SECRET} #1" in dropped.text, "read from the source, which still holds it"
    scripted = dataset_versions.version_row(root, fx.DATASET, fx.VERSION, "chats.jsonl:14")
    assert json.loads(scripted.text)["messages"][0]["role"] == fx.SCRIPT
    gone = dataset_versions.version_row(root, fx.DATASET, fx.VERSION, "chats.jsonl:13")
    assert gone.source == f"file:///data/{fx.SCRIPT}.jsonl" and gone.source_state == "unreadable"
    assert gone.text is None and "cannot be read now" in gone.source_note
    kept = dataset_versions.version_row(root, fx.DATASET, fx.VERSION, "chats.jsonl:3")
    assert not kept.rejected and kept.split == "train" and f"{fx.SECRET} #3" in kept.text
    assert dataset_versions.version_row(root, fx.DATASET, fx.VERSION, "chats.jsonl:99") is None
    assert dataset_versions.version_row(root, fx.DATASET, "other", "chats.jsonl:3") is None


def _write_report(root: str, name: str, version: str, report: dict) -> None:
    prefix = layout.dataset_version(root, name, version)
    store.write_json(store.join(prefix, "validation_report.json"), report)


def _lengths_report(**lengths: list[int]) -> dict:
    """A validation report with token lengths counted by one tokenizer per keyword."""
    histograms = {}
    for tokenizer, values in lengths.items():
        histograms[tokenizer] = LengthHistogram()
        histograms[tokenizer].add(values)
    return validation_report({"token_lengths": {k: h.to_dict() for k, h in histograms.items()}})


def test_token_lengths_are_drawn_from_the_bins_of_every_tokenizer_with_gaps_kept(tmp_path):
    root = (tmp_path / "store").as_uri()
    fx.prepare_version(root, "lens", "v1", {"train": [fx._row("l.jsonl:1", "kept")]}, [])
    _write_report(root, "lens", "v1", _lengths_report(b=[4, 41, 41], a=[3, 3, 40]))
    chart = dataset_versions.dataset_version(root, "lens", "v1").token_length_chart
    # One bin per length up to 16, then quarter octaves ([39, 46) here); lengths 5 to 38 are one empty bar.
    assert chart["labels"] == ["3", "4", "5–38", "39–45"]
    assert chart["series"] == [{"label": "a", "values": [2, 0, 0, 1]}, {"label": "b", "values": [0, 1, 0, 2]}]


def test_a_version_prepared_before_bins_were_kept_shows_its_picture(tmp_path):
    root = (tmp_path / "store").as_uri()
    fx.prepare_version(root, "old", "v1", {"train": [fx._row("o.jsonl:1", "kept")]}, [])
    report = _lengths_report(tiny=[12, 20])
    del report["token_lengths"]["tiny"]["bins"]
    _write_report(root, "old", "v1", report)
    page = dataset_versions.dataset_version(root, "old", "v1")
    assert page.token_length_chart is None and page.show_picture
    assert [(t.tokenizer, t.min, t.max) for t in page.token_lengths] == [("tiny", 12, 20)]


def test_a_dropped_row_of_a_changed_source_is_read_and_said_to_have_changed(tmp_path):
    root = (tmp_path / "store").as_uri()
    fx.build_datasets(root)
    source = fx.source_uri(root)
    store.backend_for(source).write_bytes(source, b'{"text": "1"}\n' * 11 + b'{"text": "rewritten"}\n')
    row = dataset_versions.version_row(root, fx.DATASET, fx.VERSION, "chats.jsonl:12")
    assert row.source_state == "changed" and json.loads(row.text) == {"text": "rewritten"}
    assert "may not be the one that was dropped" in row.source_note
    unnamed = dataset_rows.open_row(root, fx.DATASET, fx.VERSION, "chats.jsonl:12", sources=[])
    assert unnamed.text is None and unnamed.source_note.startswith("the validation report names no source")


def test_a_failed_version_shows_its_error_and_what_it_counted(tmp_path):
    root = (tmp_path / "store").as_uri()
    prefix = layout.dataset_version(root, "broken", "v9")
    report = {"counts": {"train": 3}, "drop_reasons": {}}
    store.write_json(store.join(prefix, "validation_report.json"), report)
    store.write_json(store.join(prefix, "error.json"), {"message": "90% dropped > max_drop_ratio 0.2"})
    page = dataset_versions.dataset_version(root, "broken", "v9")
    assert page.summary.state == "failed" and "max_drop_ratio" in page.summary.error
    assert page.summary.counts == {"train": 3} and page.card is None and not page.has_histogram


def test_a_version_on_s3_is_read_through_the_store(s3_store_root):
    rejected = [{"id": "s.jsonl:2", "reason": "too_long", "detail": "x", "source": 0}]
    fx.prepare_version(s3_store_root, "s3set", "v1", {"test": [fx._row("s.jsonl:1", fx.SCRIPT)]}, rejected)
    page = dataset_versions.dataset_version(s3_store_root, "s3set", "v1")
    assert [r.id for r in page.rejected.rows] == ["s.jsonl:2"] and page.has_histogram and page.card
    row = dataset_versions.version_row(s3_store_root, "s3set", "v1", "s.jsonl:1")
    assert row.split == "test" and fx.SCRIPT in row.text
