"""The dataset registry: revisions, refusals, prepared versions, delete and resolve (no model, no data)."""

from __future__ import annotations

import pytest

from tasks.config.dataset import DatasetConfig
from tasks.data import dataset_registry as reg
from tasks.storage import layout, store


@pytest.fixture
def root(tmp_path) -> str:
    return (tmp_path / "store").as_uri()


def fake_version(root: str, name: str, version: str, counts: dict[str, int] | None = None) -> str:
    """A committed prepared version, as the prepare step leaves it."""
    prefix = layout.dataset_version(root, name, version)
    store.write_json(store.join(prefix, "validation_report.json"), {"drop_reasons": {"too_long": 2}})
    result = {"name": name, "version": version, "counts": counts or {"train": 8, "validation": 1, "test": 1}}
    store.commit(prefix, {**result, "dropped": 2, "drop_reasons": {"too_long": 2}})
    return prefix


def set_mtime(uri: str, seconds: float) -> None:
    import os

    os.utime(store.local_path(uri), (seconds, seconds))


def test_create_get_update_keeps_history(root):
    first = reg.create(root, {"name": "support", "uri": "data/support.jsonl", "split": "80,10,10"}, note="v1")
    assert first["revision"] == 1 and first["note"] == "v1" and first["created_at"]
    assert reg.get(root, "support")["split"] == "80,10,10"

    second = reg.update(root, "support", {"max_tokens": 512}, note="cap length")
    assert second["revision"] == 2
    assert second["split"] == "80,10,10" and second["max_tokens"] == 512
    assert reg.get(root, "support")["revision"] == 2
    assert reg.get(root, "support", revision=1)["max_tokens"] is None
    assert [r["revision"] for r in reg.history(root, "support")] == [1, 2]
    assert reg.changed_fields(first, second) == ["max_tokens"]
    # Stored on disk where the layout says, revisions never rewritten.
    prefix = store.join(root, "dataset_registry", "support")
    assert store.list_dir(store.join(prefix, "revisions")) == ["0001.json", "0002.json"]
    assert store.read_json(store.join(prefix, "current.json"))["revision"] == 2


def test_stored_definition_is_a_valid_dataset_config(root):
    record = reg.create(root, {"name": "support", "uri": "x.jsonl"})
    config = DatasetConfig.model_validate(reg.definition_of(record))
    assert config.uri == "x.jsonl" and config.max_drop_ratio == 0.2


def test_update_switching_source_mode_drops_the_other_modes(root):
    reg.create(root, {"name": "support", "uri": "all.jsonl", "split": "80,10,10"})
    record = reg.update(root, "support", {"train_uri": "train.jsonl", "test_uri": "test.jsonl"})
    assert record["uri"] is None and record["split"] == "90,5,5"
    assert record["train_uri"] == "train.jsonl"
    record = reg.update(root, "support", {"sources": [{"uri": "a.jsonl", "weight": 2}]})
    assert record["train_uri"] is None and record["test_uri"] is None
    assert record["sources"][0]["weight"] == 2.0


def test_update_none_resets_to_default(root):
    reg.create(root, {"name": "support", "uri": "x.jsonl", "max_tokens": 256})
    assert reg.update(root, "support", {"max_tokens": None})["max_tokens"] is None


def test_duplicate_create_is_refused(root):
    reg.create(root, {"name": "support", "uri": "x.jsonl"})
    with pytest.raises(reg.DatasetRegistryError, match="already registered; use `tunerflow dataset update"):
        reg.create(root, {"name": "support", "uri": "y.jsonl"})


def test_invalid_definition_names_the_field(root):
    with pytest.raises(reg.DefinitionError, match=r"split: split '50,10,10' sums to 70"):
        reg.create(root, {"name": "support", "uri": "x.jsonl", "split": "50,10,10"})
    with pytest.raises(reg.DefinitionError, match=r"max_drop_ratio"):
        reg.create(root, {"name": "support", "uri": "x.jsonl", "max_drop_ratio": 3})
    with pytest.raises(reg.DefinitionError, match="give exactly one of uri"):
        reg.create(root, {"name": "support"})
    assert reg.list_datasets(root) == []


def test_registering_a_file_outside_the_allowed_paths_is_refused(root, tmp_path, monkeypatch):
    monkeypatch.setenv("TUNERFLOW_ALLOWED_PATHS", str(tmp_path / "data"))
    with pytest.raises(reg.DefinitionError, match=r"sources\.1\.uri: '/etc/passwd' is outside"):
        reg.create(
            root,
            {"name": "support", "sources": [{"uri": f"{tmp_path}/data/a.jsonl"}, {"uri": "/etc/passwd"}]},
        )
    with pytest.raises(reg.DefinitionError, match=r"\nuri: .* is outside"):
        reg.create(root, {"name": "support", "uri": f"{tmp_path}/data/../secret.jsonl"})
    assert reg.list_datasets(root) == []
    reg.create(root, {"name": "support", "uri": f"{tmp_path}/data/a.jsonl"})


def test_bad_names_are_refused_before_touching_the_store(root):
    for name in ("../escape", "Upper", ""):
        with pytest.raises(reg.DatasetRegistryError, match="not a valid dataset name"):
            reg.create(root, {"name": name, "uri": "x.jsonl"})
    with pytest.raises(reg.DatasetRegistryError, match="not a valid dataset name"):
        reg.delete(root, "../..", purge=True)


def test_registered_inside_a_definition_is_refused(root):
    reg.create(root, {"name": "base", "uri": "x.jsonl"})
    with pytest.raises(reg.DefinitionError, match="registered: a registered definition"):
        reg.create(root, {"name": "support", "registered": "base"})


def test_update_refusals(root):
    reg.create(root, {"name": "support", "uri": "x.jsonl", "seed": 7})
    with pytest.raises(reg.DatasetRegistryError, match="nothing changes"):
        reg.update(root, "support", {"seed": 7})
    with pytest.raises(reg.DefinitionError, match="cannot be renamed"):
        reg.update(root, "support", {"name": "other"})
    with pytest.raises(reg.DefinitionError, match="split"):
        reg.update(root, "support", {"split": "0,50,50"})
    with pytest.raises(reg.DatasetRegistryError, match="no registered dataset 'nope'; registered: support"):
        reg.update(root, "nope", {"seed": 1})
    assert len(reg.history(root, "support")) == 1


def test_unknown_name_and_revision(root):
    with pytest.raises(ValueError, match="no registered dataset 'x'; registered: none"):
        reg.get(root, "x")
    reg.create(root, {"name": "b", "uri": "x.jsonl"})
    reg.create(root, {"name": "a", "uri": "x.jsonl"})
    with pytest.raises(ValueError, match="no registered dataset 'x'; registered: a, b"):
        reg.get(root, "x")
    with pytest.raises(ValueError, match="no revision 5; revisions: 1"):
        reg.get(root, "a", revision=5)


def test_lost_revision_race_merges_onto_the_winner(root, monkeypatch):
    reg.create(root, {"name": "support", "uri": "x.jsonl"})
    real_create_json = store.create_json
    raced = []

    def racing_create_json(uri, payload):
        # Another update claims revision 2 just before this one does.
        if not raced:
            raced.append(True)
            winner = {**reg.get(root, "support"), "seed": 9, "revision": 2}
            real_create_json(uri, winner)
        real_create_json(uri, payload)

    monkeypatch.setattr(store, "create_json", racing_create_json)
    record = reg.update(root, "support", {"max_tokens": 64})
    assert record["revision"] == 3
    assert record["seed"] == 9 and record["max_tokens"] == 64
    assert reg.get(root, "support")["revision"] == 3


def test_list_with_prepared_versions(root):
    reg.create(root, {"name": "support", "uri": "x.jsonl"})
    reg.create(root, {"name": "mix", "sources": [{"uri": "a.jsonl"}, {"uri": "b.jsonl", "weight": 0.5}]})
    reg.create(root, {"name": "split", "train_uri": "t.jsonl", "test_uri": "e.jsonl"})
    old = fake_version(root, "support", "aaaa", {"train": 4, "validation": 1, "test": 1})
    new = fake_version(root, "support", "bbbb", {"train": 9, "validation": 1, "test": 1})
    set_mtime(store.join(old, "manifest.json"), 1_000_000)
    set_mtime(store.join(new, "manifest.json"), 2_000_000)

    rows = {row["name"]: row for row in reg.list_datasets(root)}
    assert list(rows) == ["mix", "split", "support"]
    assert rows["support"]["source"] == "x.jsonl"
    assert rows["support"]["prepared_versions"] == 2
    assert rows["support"]["latest_version"] == "bbbb"
    assert rows["support"]["latest_counts"] == {"train": 9, "validation": 1, "test": 1}
    assert rows["mix"]["source"] == "2 sources" and rows["mix"]["prepared_versions"] == 0
    assert rows["split"]["source"] == "pre-split: train, test"
    assert rows["mix"]["latest_counts"] is None


def test_uncommitted_version_is_listed_as_not_ready(root):
    reg.create(root, {"name": "support", "uri": "x.jsonl"})
    fake_version(root, "support", "done")
    half = layout.dataset_version(root, "support", "half")
    store.write_json(store.join(half, "train.jsonl.partial"), [])
    failed = layout.dataset_version(root, "support", "failed")
    store.write_json(
        store.join(failed, "error.json"), {"step": "prepare_dataset", "message": "too many drops"}
    )

    versions = {v["version"]: v for v in reg.prepared_versions(root, "support")}
    assert versions["done"]["ready"] and versions["done"]["result"]["counts"]["train"] == 8
    assert versions["done"]["committed_at"]
    assert not versions["half"]["ready"] and versions["half"]["state"] == "incomplete"
    assert not versions["failed"]["ready"] and versions["failed"]["state"] == "failed"
    assert versions["failed"]["error"] == "too many drops"
    assert reg.list_datasets(root)[0]["prepared_versions"] == 1
    assert reg.validation_report(root, "support", "done") == {"drop_reasons": {"too_long": 2}}


def test_delete_keeps_prepared_versions_purge_removes_them(root):
    reg.create(root, {"name": "support", "uri": "x.jsonl"})
    reg.update(root, "support", {"seed": 1})
    version = fake_version(root, "support", "aaaa")
    removed = reg.delete(root, "support")
    assert removed == {"name": "support", "revisions": [1, 2], "purged_versions": []}
    assert store.is_committed(version)
    with pytest.raises(ValueError, match="no registered dataset 'support'"):
        reg.get(root, "support")

    reg.create(root, {"name": "support", "uri": "x.jsonl"})
    assert reg.get(root, "support")["revision"] == 1
    removed = reg.delete(root, "support", purge=True)
    assert removed["purged_versions"] == ["aaaa"]
    assert not store.exists(version)
    assert reg.list_datasets(root) == []
    with pytest.raises(ValueError, match="no registered dataset"):
        reg.delete(root, "support")


def test_interrupted_create_can_be_deleted(root):
    reg.create(root, {"name": "support", "uri": "x.jsonl"})
    store.remove(store.join(root, "dataset_registry", "support", "current.json"))
    with pytest.raises(reg.DatasetRegistryError, match="being registered"):
        reg.create(root, {"name": "support", "uri": "x.jsonl"})
    assert reg.delete(root, "support")["revisions"] == [1]
    assert reg.create(root, {"name": "support", "uri": "x.jsonl"})["revision"] == 1


def test_resolve_gives_the_registered_definition_under_its_registered_name(root):
    reg.create(root, {"name": "support-tickets", "uri": "x.jsonl", "split": "80,10,10"})
    resolved = reg.resolve(root, {"name": "support", "registered": "support-tickets", "format": "auto"})
    assert resolved["name"] == "support-tickets", "prepared versions land under the registration"
    assert resolved["uri"] == "x.jsonl" and resolved["split"] == "80,10,10"
    assert "registered" not in resolved and "revision" not in resolved
    DatasetConfig.model_validate(resolved)

    inline = {"name": "inline", "uri": "y.jsonl"}
    assert reg.resolve(root, inline) is inline


def test_resolve_refusals(root):
    reg.create(root, {"name": "support-tickets", "uri": "x.jsonl"})
    with pytest.raises(ValueError, match="no registered dataset 'nope'; registered: support-tickets"):
        reg.resolve(root, {"name": "support", "registered": "nope"})
    with pytest.raises(reg.DefinitionError, match="takes its settings from the registry"):
        reg.resolve(root, {"name": "support", "registered": "support-tickets", "seed": 3})
