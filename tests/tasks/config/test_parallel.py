"""The parallel and GPU-only settings (nodes, processes_per_node, fsdp, use_liger_kernel, torch_compile):
one declaration each, DeepSpeed and FSDP2 never both, and what a deployment cannot run is refused when
the conf is validated, naming the group and the field."""

from __future__ import annotations

import pytest

from tasks.config.catalog import resolve_experiment
from tasks.config.experiment import parse_experiment
from tasks.config.hparams import HParams, ResolvedHParams
from tasks.config.params import demo_conf_path, field_schemas, load_conf
from tests.tasks.training.test_train_types import HPARAMS


def resolve(monkeypatch, backend: str, cuda: str, method: str = "lora", **group):
    monkeypatch.setenv("TUNERFLOW_BACKEND", backend)
    monkeypatch.setenv("TUNERFLOW_CUDA", cuda)
    conf = load_conf(demo_conf_path())
    conf["training"] = {"type": "sft", "method": method}
    conf["hparams"] = [{"name": "big", "preset": "lora-fast", **group}]
    return resolve_experiment(parse_experiment(conf))["hparams"][0]


def test_the_trigger_form_offers_each_setting_once():
    fields = field_schemas()["hparams"]["items"]["properties"]
    for name in ("nodes", "processes_per_node", "fsdp", "use_liger_kernel", "torch_compile", "deepspeed"):
        assert fields[name]["description"], name
    assert {"type": "integer", "minimum": 1} in fields["nodes"]["anyOf"]
    with pytest.raises(ValueError, match="greater than or equal to 1"):
        HParams(nodes=0)


def test_a_spec_written_before_these_settings_loads_with_their_defaults():
    hp = ResolvedHParams.model_validate(HPARAMS)
    assert (hp.nodes, hp.processes_per_node, hp.fsdp, hp.use_liger_kernel, hp.torch_compile) == (
        1,
        None,
        None,
        False,
        False,
    )
    assert "nodes" not in hp.model_dump(mode="json")  # written as given: its fingerprint is unchanged


def test_deepspeed_and_fsdp_together_are_refused_naming_both():
    with pytest.raises(ValueError, match="deepspeed 'zero3' and fsdp 'full_shard' both shard the model"):
        ResolvedHParams.model_validate({**HPARAMS, "deepspeed": "zero3", "fsdp": "full_shard"})


def test_processes_per_node_needs_several_nodes():
    with pytest.raises(ValueError, match="processes_per_node applies to a training over several nodes"):
        ResolvedHParams.model_validate({**HPARAMS, "processes_per_node": 4})
    hp = ResolvedHParams.model_validate({**HPARAMS, "nodes": 2, "processes_per_node": 4})
    assert (hp.nodes, hp.processes_per_node) == (2, 4)


@pytest.mark.parametrize("field", ["use_liger_kernel", "torch_compile"])
def test_gpu_only_speedups_are_refused_without_cuda_and_accepted_with_gpu_pods(monkeypatch, field):
    with pytest.raises(ValueError) as error:
        resolve(monkeypatch, "local", "0", **{field: True})
    assert f"hparams.0: hparams 'big': {field} is refused:" in str(error.value)
    assert f"unset {field}, or run the train step on GPUs" in str(error.value)
    assert resolve(monkeypatch, "kubernetes", "", **{field: True})[field] is True


def test_fsdp_is_refused_without_cuda_and_with_qlora(monkeypatch):
    with pytest.raises(ValueError, match="hparams 'big': fsdp is refused: FSDP2 shards the model over CUDA"):
        resolve(monkeypatch, "local", "0", method="full", fsdp="full_shard")
    with pytest.raises(ValueError, match=r"fsdp with training\.method 'qlora' is refused"):
        resolve(monkeypatch, "kubernetes", "", method="qlora", fsdp="full_shard")
    assert resolve(monkeypatch, "kubernetes", "", method="full", fsdp="full_shard")["fsdp"] == "full_shard"


def test_several_nodes_are_refused_on_the_local_backend_naming_the_field(monkeypatch):
    with pytest.raises(ValueError) as error:
        resolve(monkeypatch, "local", "1", nodes=2)
    expected = "hparams.0: hparams 'big': nodes 2 needs the kubernetes backend (TUNERFLOW_BACKEND=kubernetes)"
    assert expected in str(error.value)
    resolved = resolve(monkeypatch, "kubernetes", "", nodes=2, processes_per_node=8)
    assert (resolved["nodes"], resolved["processes_per_node"]) == (2, 8)


def test_deepspeed_over_several_nodes_needs_a_shared_store(monkeypatch):
    monkeypatch.setenv("TUNERFLOW_STORE", "s3://bucket/tf")
    with pytest.raises(ValueError, match="deepspeed over 2 nodes with an s3:// store is refused"):
        resolve(monkeypatch, "kubernetes", "", method="full", nodes=2, deepspeed="zero3")
    monkeypatch.setenv("TUNERFLOW_STORE", "file:///data/tunerflow")
    assert resolve(monkeypatch, "kubernetes", "", method="full", nodes=2, deepspeed="zero3")["nodes"] == 2
