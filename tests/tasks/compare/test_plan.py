"""plan_compare: every kind of model choice resolves to what the step loads, the spec is written where
the Compare page finds it, and a refused conf names each bad field."""

from __future__ import annotations

import pytest

from tasks.compare.config import CompareConfig, param_specs
from tasks.compare.plan import plan_compare, spec_uri
from tasks.config.base import ConfError
from tasks.config.params import NO_DEFAULT
from tasks.contracts.compare import CompareSpec
from tasks.storage import store


def _plan(root, models, **conf):
    return plan_compare({"models": models, **conf}, "manual__2026-01-01T00:00:00+00:00", root)


def test_each_kind_of_choice_resolves_and_the_spec_is_stored(stocked_store, tiny_model_dir):
    spec = _plan(
        stocked_store,
        [
            {"registry": "tiny"},
            {"experiment": "exp", "run": "manual__1", "job": "qa--tiny--base"},
            {"catalog": "smollm2-135m-instruct", "temperature": 0.7},
            {"path": str(tiny_model_dir), "label": "mine"},
        ],
        prompts=["Who are you?"],
        eval_set={"dataset": "qa", "version": "v1", "limit": 2},
    )
    registry, job, catalog, path = spec.models
    assert (registry.kind, registry.label, registry.source) == (
        "pytorch",
        "tiny v1",
        "registry tiny v1 (production)",
    )
    assert registry.model_uri == store.to_uri(tiny_model_dir) and registry.entry.name == "tiny"
    assert (job.label, job.entry.name, job.adapter_uri) == ("qa|tiny|base", "tiny", None)
    assert catalog.entry.source.gguf is not None and catalog.temperature == 0.7
    assert path.label == "mine" and path.entry.source.path == store.to_uri(tiny_model_dir)
    assert spec.prompts[0].messages == [{"role": "user", "content": "Who are you?"}]
    assert spec.eval_set.limit == 2 and spec.eval_set.dataset.name == "qa"
    assert spec.output.endswith("/compare/manual__2026-01-01T00-00-00-00-00/results")
    stored = store.read_json(spec_uri(stocked_store, "manual__2026-01-01T00:00:00+00:00"))
    assert CompareSpec.model_validate(stored) == spec


def test_onnx_and_endpoint_choices_and_the_same_model_twice_get_told_apart(stocked_store, tiny_model_dir):
    spec = _plan(
        stocked_store,
        [
            {"path": str(tiny_model_dir), "label": "tiny"},
            {"path": str(tiny_model_dir), "label": "tiny", "temperature": 0.8},
            {"onnx": "/exports/onnx-int8"},
            {"connection": "my_llm", "model": "gpt-x"},
        ],
    )
    labels = [m.label for m in spec.models]
    assert labels == ["tiny T=0", "tiny T=0.8", "/exports/onnx-int8", "my_llm gpt-x"]
    assert spec.models[2].onnx_uri == "file:///exports/onnx-int8"
    assert (spec.models[3].kind, spec.models[3].conn_id) == ("endpoint", "my_llm")
    assert spec.connections == ["my_llm"]


def test_a_registry_versions_int8_export_is_an_onnx_model(store_root, tiny_model_dir):
    from tests.tasks.compare.conftest import register_tiny

    register_tiny(store_root, tiny_model_dir, exports={"onnx-int8": "file:///runs/r/export/onnx-int8"})
    spec = _plan(
        store_root,
        [{"registry": "tiny", "version": 1, "format": "onnx-int8"}, {"catalog": "smollm2-135m-instruct"}],
    )
    assert (spec.models[0].kind, spec.models[0].onnx_uri) == ("onnx", "file:///runs/r/export/onnx-int8")


def test_a_runs_eval_rows_are_the_eval_set(stocked_store):
    spec = _plan(
        stocked_store,
        [{"registry": "tiny"}, {"registry": "tiny"}],
        prompts=[],
        eval_set={"experiment": "exp", "run": "manual__1", "limit": 1},
    )
    assert spec.eval_set.dataset.name == "qa" and spec.prompts == []


@pytest.mark.parametrize(
    ("models", "conf", "message"),
    [
        (
            [{"registry": "nope"}, {"registry": "tiny"}],
            {},
            "models.0.registry: no registry 'nope' (registries: tiny)",
        ),
        (
            [{"registry": "tiny", "version": 7}, {"registry": "tiny"}],
            {},
            "models.0.version: 'tiny' has no v7",
        ),
        (
            [{"registry": "tiny"}, {"experiment": "exp", "run": "manual__1", "job": "x"}],
            {},
            "models.1.job: no job 'x' in run 'manual__1' of experiment 'exp' (jobs: qa--tiny--base)",
        ),
        ([{"catalog": "gpt-9"}, {"registry": "tiny"}], {}, "models.0.catalog: 'gpt-9' is not in the catalog"),
        (
            [{"registry": "tiny"}, {"registry": "tiny"}],
            {"eval_set": {"dataset": "qa", "version": "v9"}},
            "eval_set: dataset 'qa' version 'v9' is not prepared",
        ),
        (
            [{"registry": "tiny"}, {"registry": "tiny", "format": "onnx-int8"}],
            {},
            "models.1.format: tiny v1 was registered without an onnx-int8 export",
        ),
        ([{"registry": "tiny"}], {}, "models: List should have at least 2 items"),
        ([{"registry": "tiny"}, {"weights": "x"}], {}, "models.1: a model is one of: registry, experiment"),
        ([{"registry": "tiny"}, {"registry": "tiny"}], {"prompts": []}, "prompts: type at least one prompt"),
    ],
)
def test_a_refused_conf_names_the_field(stocked_store, models, conf, message):
    with pytest.raises(ConfError) as refused:
        _plan(stocked_store, models, **conf)
    assert message in str(refused.value)
    assert not store.exists(store.join(stocked_store, "compare"))


def test_the_params_are_the_confs_json_schema_and_models_has_no_default():
    specs = param_specs()
    assert list(specs) == list(CompareConfig.model_fields)
    default, models = specs["models"]
    assert default is NO_DEFAULT and models["minItems"] == 2 and models["maxItems"] == 4
    kinds = [set(option["required"]) for option in models["items"]["oneOf"]]
    assert {"registry"} in kinds and {"experiment", "run", "job"} in kinds and {"connection"} in kinds
    assert all(option["additionalProperties"] is False for option in models["items"]["oneOf"])
    assert specs["max_new_tokens"][0] == 128 and specs["temperature"][1]["maximum"] == 2.0


def test_model_paths_outside_the_allowed_roots_are_refused_naming_the_field(
    store_root, tiny_model_dir, tmp_path
):
    models = [{"path": f"{tiny_model_dir}/../.."}, {"onnx": "/etc/model.onnx"}, {"path": str(tiny_model_dir)}]
    with pytest.raises(ConfError) as error:
        plan_compare({"models": models, "prompts": ["hi"]}, "r1", store_root, allowed_roots=[tiny_model_dir])
    lines = str(error.value).split("\n")
    assert [line.split(":")[0] for line in lines] == ["models.0.path", "models.1.onnx"]
    assert "TUNERFLOW_ALLOWED_PATHS" in lines[0]
    assert not store.exists(spec_uri(store_root, "r1"))
