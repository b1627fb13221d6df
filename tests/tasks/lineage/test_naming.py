"""Dataset names follow OpenLineage's naming spec and depend on the URI alone."""

from __future__ import annotations

import pytest

from tasks.config.catalog import CatalogEntry
from tasks.lineage.naming import dataset_id, model_id

pytest.importorskip("openlineage.client")


@pytest.mark.parametrize(
    ("uri", "expected"),
    [
        ("s3://bucket/datasets/tuna/v1", ("s3://bucket", "datasets/tuna/v1")),
        ("file:///srv/store/datasets/tuna/v1", ("file", "/srv/store/datasets/tuna/v1")),
        ("file://nas1/srv/store/datasets/tuna/v1", ("file://nas1", "/srv/store/datasets/tuna/v1")),
        ("file:///srv/my%20store/x", ("file", "/srv/my store/x")),
        ("/srv/data/rows.jsonl", ("file", "/srv/data/rows.jsonl")),
        ("builtin:tuna_identity", ("builtin", "tuna_identity")),
        ("hf:org/name:config@train", ("huggingface", "org/name:config@train")),
        ("gs://bucket/key", ("gs://bucket", "key")),
    ],
)
def test_a_uri_names_its_dataset_by_the_naming_spec(uri, expected):
    assert dataset_id(uri) == expected


def test_two_runs_reading_one_prepared_version_name_one_dataset(monkeypatch, tmp_path):
    uri = "file:///srv/store/datasets/tuna/v-abc"
    first = dataset_id(uri)
    monkeypatch.setattr("socket.gethostname", lambda: "another-worker")
    monkeypatch.chdir(tmp_path)
    assert dataset_id(uri) == first


def test_a_base_model_is_named_by_its_hub_id_or_its_path():
    hub = CatalogEntry(name="smol", source={"hub": "HuggingFaceTB/SmolLM2-135M-Instruct"})
    assert model_id(hub) == ("huggingface", "HuggingFaceTB/SmolLM2-135M-Instruct")
    local = CatalogEntry(name="tiny", kind="uri", source={"path": "file:///models/tiny"})
    assert model_id(local) == ("file", "/models/tiny")
    gguf = CatalogEntry(name="g", source={"gguf": {"package": "pkg", "file": "m.gguf"}})
    assert model_id(gguf) == ("python-package", "pkg/m.gguf")
