"""The kubernetes backend's settings: include/configs/kubernetes.yaml, its loading and validation."""

from __future__ import annotations

import pytest
import yaml

from tasks.backends import kubernetes_settings as pod_settings
from tests.conftest import REPO

SHIPPED = REPO / "include" / "configs" / "kubernetes.yaml"


def _write(tmp_path, data) -> str:
    path = tmp_path / "k8s.yaml"
    path.write_text(yaml.safe_dump(data))
    return str(path)


def test_the_shipped_yaml_validates_and_documents_exactly_the_defaults():
    settings = pod_settings.load_settings(SHIPPED)
    assert settings == pod_settings.KubernetesSettings()
    assert settings.image.startswith("ghcr.io/tunerflow/trainer:")
    assert settings.resources.train.gpus == 1 and settings.resources.evaluate.gpus == 1
    assert settings.resources.export.gpus == 0 and settings.resources.prepare_dataset.gpus == 0
    assert settings.startup_timeout_seconds == 1800 and settings.termination_grace_period_seconds == 600
    assert settings.pool == "tunerflow_gpu" and settings.deferrable and settings.reattach_on_restart
    assert settings.on_finish_action == "delete_succeeded_pod" and settings.get_logs


def test_every_field_is_described():
    def check(model):
        for name, field in model.model_fields.items():
            assert field.description, f"{model.__name__}.{name} has no description"

    for model in (
        pod_settings.KubernetesSettings,
        pod_settings.Resources,
        pod_settings.StepResources,
        pod_settings.Toleration,
        pod_settings.VolumeClaim,
    ):
        check(model)


def test_the_config_file_comes_from_the_environment(tmp_path, monkeypatch):
    monkeypatch.setenv(
        pod_settings.CONFIG_ENV, _write(tmp_path, {"namespace": "ml-jobs", "kueue_queue_name": "gpu"})
    )
    settings = pod_settings.load_settings()
    assert settings.namespace == "ml-jobs" and settings.kueue_queue_name == "gpu"
    monkeypatch.delenv(pod_settings.CONFIG_ENV)
    monkeypatch.setenv("TUNERFLOW_CONFIG_DIR", str(SHIPPED.parent))
    assert pod_settings.config_path() == SHIPPED


@pytest.mark.parametrize(
    ("data", "field", "message"),
    [
        ({"resources": {"train": {"memory_limit": "64GB"}}}, "resources.train.memory_limit", "quantity"),
        ({"resources": {"evaluate": {"gpus": -1}}}, "resources.evaluate.gpus", "greater than or equal"),
        ({"resources": {"trainn": {"gpus": 1}}}, "resources.trainn", "Extra inputs"),
        ({"namespace": "ML_Jobs"}, "namespace", "pattern"),
        ({"imagee": "x"}, "imagee", "Extra inputs"),
        ({"startup_timeout_seconds": 0}, "startup_timeout_seconds", "greater than 0"),
        (
            {"gpu_tolerations": [{"key": "k", "effect": "NoScheduled"}]},
            "gpu_tolerations.0.effect",
            "NoSchedule",
        ),
        ({"env": {"AWS_SECRET_ACCESS_KEY": "abc"}}, "env.AWS_SECRET_ACCESS_KEY", "env_from_secrets"),
        ({"env": {"HF_TOKEN": "hf_x"}}, "env.HF_TOKEN", "Secret"),
        (
            {"env": {"AIRFLOW_CONN_AWS_DEFAULT": '{"login": "k", "password": "s"}'}},
            "env.AIRFLOW_CONN_AWS_DEFAULT",
            "env_from_secrets",
        ),
        ({"labels": {"team": "ml platform"}}, "labels.team", "label value"),
        (
            {"store_volume": {"claim_name": "store", "mount_path": "data"}},
            "store_volume.mount_path",
            "pattern",
        ),
        ({"on_finish_action": "delete"}, "on_finish_action", "delete_succeeded_pod"),
        ({"affinity": {"nodeAfinity": {}}}, "affinity", "nodeAfinity"),
    ],
)
def test_a_bad_value_is_an_error_naming_the_field(tmp_path, data, field, message):
    path = _write(tmp_path, data)
    with pytest.raises(pod_settings.SettingsError) as caught:
        pod_settings.load_settings(path)
    text = str(caught.value)
    assert path in text and field in text and message in text, text


def test_unreadable_or_non_mapping_files_are_clear_errors(tmp_path):
    with pytest.raises(pod_settings.SettingsError, match="cannot read"):
        pod_settings.load_settings(tmp_path / "missing.yaml")
    (tmp_path / "list.yaml").write_text("- a\n- b\n")
    with pytest.raises(pod_settings.SettingsError, match="must be a mapping"):
        pod_settings.load_settings(tmp_path / "list.yaml")
    (tmp_path / "bad.yaml").write_text("namespace: [unclosed\n")
    with pytest.raises(pod_settings.SettingsError, match="not valid YAML"):
        pod_settings.load_settings(tmp_path / "bad.yaml")


def test_yaml_numbers_are_quantities_and_partial_steps_merge_over_their_defaults():
    settings = pod_settings.parse_settings(
        {"resources": {"train": {"gpus": 2, "cpu_request": 16}}, "shm_size": "32Gi"}
    )
    assert settings.resources.train.gpus == 2
    assert settings.resources.train.cpu_request == "16"
    assert settings.resources.train.memory_limit == pod_settings.STEP_DEFAULTS["train"]["memory_limit"]
    assert settings.resources.evaluate == pod_settings.StepResources(**pod_settings.STEP_DEFAULTS["evaluate"])
