"""Each step's lineage, built from the specs the planner wrote and the results committed in a store
written with the project's own writers (tests/fixtures/lineage_store.py): the datasets chain from the
raw dataset to the production pointer, and carry their facets."""

from __future__ import annotations

import pytest

from tasks.lineage.datasets import content
from tasks.lineage.promotion import promotion_lineage
from tasks.lineage.steps import step_lineage
from tasks.storage import store
from tasks.storage.uris import split_bucket
from tests.fixtures.lineage_store import REGISTRY, ROWS, build_lineage_run

pytest.importorskip("openlineage.client")


@pytest.fixture
def run(store_root, tmp_path):
    return build_lineage_run(store_root, str(tmp_path / "tiny-model"))


def _json(datasets) -> list[dict]:
    from openlineage.client.serde import Serde

    return [Serde.to_dict(d) for d in datasets]


def _ids(datasets) -> list[tuple[str, str]]:
    return [(d["namespace"], d["name"]) for d in datasets]


def _lineage(step: str, spec_uri: str, result) -> tuple[list[dict], list[dict]]:
    lineage = step_lineage(step, store.read_json(spec_uri), result.model_dump(mode="json"))
    return _json(lineage.inputs), _json(lineage.outputs)


def test_prepare_reads_the_source_and_writes_the_version_with_rows_and_content_hash(run):
    lineage = step_lineage("prepare_dataset", run.prepare_spec, run.prepared.model_dump(mode="json"))
    [source], [prepared] = _json(lineage.inputs), _json(lineage.outputs)
    assert (source["namespace"], source["name"]) == ("builtin", "tuna_identity")
    assert (
        prepared["namespace"] == "file" and prepared["name"] == store.local_path(run.prepared.uri).as_posix()
    )
    facet = prepared["facets"]["tunerflow_prepared"]
    assert facet["rows"] == ROWS and facet["kept"] == 5
    assert facet["dropped"] == 2 and facet["dropReasons"] == {"too_long": 1, "duplicate": 1}
    assert prepared["facets"]["version"]["datasetVersion"] == "v-abc123"
    committed = prepared["facets"]["tunerflow_content"]
    assert committed["contentHash"] == content(run.prepared.uri).content_hash
    assert committed["files"] == 3  # the three splits (a manifest never lists itself)
    assert prepared["outputFacets"]["outputStatistics"]["rowCount"] == 5


def test_the_chain_runs_from_the_raw_dataset_to_production(run):
    prepare = step_lineage("prepare_dataset", run.prepare_spec, run.prepared.model_dump(mode="json"))
    train_in, train_out = _lineage("train", run.job.train_spec, run.trained)
    eval_in, eval_out = _lineage("evaluate", run.job.evaluate_spec, run.evaluated)
    export_in, export_out = _lineage("export", store.join(run.info.run_uri, "export.json"), run.exported)
    promote = promotion_lineage(run.info.store_root, run.decision.model_dump(mode="json"))
    promote_in, promote_out = _json(promote.inputs), _json(promote.outputs)

    [prepared] = _ids(_json(prepare.outputs))
    assert prepared in _ids(train_in) and prepared in _ids(eval_in)
    adapter = ("file", store.local_path(run.trained.adapter_uri).as_posix())
    checkpoints = ("file", store.local_path(run.trained.checkpoints.uri).as_posix())
    assert _ids(train_out) == [checkpoints, adapter]
    assert adapter in _ids(eval_in) and adapter in _ids(export_in)
    merged = ("file", store.local_path(run.exported.merged_uri).as_posix())
    assert _ids(export_out)[0] == merged and merged in _ids(promote_in)
    registry = store.local_path(run.decision.registry_uri).as_posix()
    assert _ids(promote_out) == [("file", f"{registry}/versions/1"), ("file", f"{registry}/production.json")]
    assert eval_out[0]["facets"]["tunerflow_metrics"]["metrics"] == {"rouge_l": 0.75}


def test_training_writes_checkpoints_and_a_model_with_hyperparameters_and_final_metrics(run):
    inputs, [checkpoints, adapter] = _lineage("train", run.job.train_spec, run.trained)
    base = next(d for d in inputs if d["facets"].get("tunerflow_model", {}).get("role") == "base_model")
    assert base["facets"]["tunerflow_model"]["baseModel"] == "tiny"
    assert checkpoints["facets"]["tunerflow_model"]["steps"] == [1, 2]
    training = adapter["facets"]["tunerflow_training"]
    assert training["hyperparameters"]["name"] == "a" and training["hyperparameters"]["max_steps"] == 2
    assert training["metrics"] == {"train_loss": 2.5, "eval_loss": 2.25, "steps": 2}
    assert adapter["facets"]["tunerflow_model"] == {**adapter["facets"]["tunerflow_model"], "role": "adapter"}
    assert adapter["facets"]["tunerflow_content"]["contentHash"].startswith("sha256:")


def test_a_base_models_scoring_reads_the_base_model_and_the_split(run):
    inputs, [output] = _lineage("evaluate", run.reference.evaluate_spec, run.evaluated)
    roles = [d["facets"].get("tunerflow_model", {}).get("role") for d in inputs]
    assert roles == [None, "base_model"]
    assert inputs[0]["facets"]["tunerflow_prepared"]["split"] == "test"
    assert output["facets"]["tunerflow_metrics"]["rows"] == 1


def test_export_writes_each_format_with_its_size_and_hash(run):
    _, [merged, onnx] = _lineage("export", store.join(run.info.run_uri, "export.json"), run.exported)
    assert merged["facets"]["tunerflow_model"]["sizeBytes"] == 6
    assert onnx["facets"]["tunerflow_model"] == {
        **onnx["facets"]["tunerflow_model"],
        "role": "onnx",
        "sizeBytes": 4,
    }
    assert onnx["facets"]["tunerflow_content"]["files"] == 1
    assert (
        merged["facets"]["tunerflow_content"]["contentHash"]
        != onnx["facets"]["tunerflow_content"]["contentHash"]
    )
    check_in, [checks] = _lineage(
        "check_export", store.join(run.info.run_uri, "check_export.json"), run.checked
    )
    assert onnx["name"] in [d["name"] for d in check_in]
    assert checks["facets"]["tunerflow_metrics"]["passed"] is True


def test_promotion_writes_the_registry_version_and_the_production_pointer(run):
    promote = promotion_lineage(run.info.store_root, run.decision.model_dump(mode="json"))
    [version, production] = _json(promote.outputs)
    facet = production["facets"]["tunerflow_registry"]
    assert facet["registry"] == REGISTRY and facet["version"] == 1 and facet["promoted"] is True
    assert facet["metrics"] == {"rouge_l": 0.75} and facet["candidateMetric"] == 0.75
    assert version["facets"]["version"]["datasetVersion"] == "1"
    refused = {**run.decision.model_dump(mode="json"), "promoted": False, "champion_version": 1}
    again = promotion_lineage(run.info.store_root, refused)
    assert len(again.outputs) == 1, "not promoted: no production pointer written"
    assert _ids(_json(again.inputs))[-1][1].endswith("/versions/1"), "the champion compared with is read"
    disabled = {"promoted": False, "reason": "promotion.enabled is false"}
    assert not promotion_lineage(run.info.store_root, disabled)


def test_the_content_hash_follows_the_files_not_their_place(run, tmp_path):
    source = run.prepared.uri
    elsewhere = (tmp_path / "copy").as_uri()
    for name in ROWS:
        target = store.local_dir(elsewhere) / f"{name}.jsonl"
        target.write_bytes(store.local_path(store.join(source, f"{name}.jsonl")).read_bytes())
    store.commit(elsewhere, {})
    assert content(elsewhere).content_hash == content(source).content_hash
    (store.local_dir(elsewhere) / "train.jsonl").write_text("changed\n")
    store.commit(elsewhere, {})
    assert content(elsewhere).content_hash != content(source).content_hash
    assert content((tmp_path / "nothing").as_uri()) is None


def test_on_an_s3_store_datasets_are_named_by_bucket_and_key(s3_store_root, tmp_path):
    run = build_lineage_run(s3_store_root, str(tmp_path / "tiny-model"))
    lineage = step_lineage("prepare_dataset", run.prepare_spec, run.prepared.model_dump(mode="json"))
    [prepared] = _json(lineage.outputs)
    bucket, key = split_bucket(run.prepared.uri)
    assert (prepared["namespace"], prepared["name"]) == (f"s3://{bucket}", key)
    assert prepared["facets"]["tunerflow_content"]["files"] == 3
    _, train_out = _lineage("train", run.job.train_spec, run.trained)
    assert train_out[1]["namespace"] == f"s3://{bucket}" and train_out[1]["name"].endswith("/train/adapter")
