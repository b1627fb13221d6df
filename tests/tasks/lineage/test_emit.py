"""Lineage goes to the OpenLineage provider only when it is installed and enabled, is never built
otherwise, and never fails the task it describes. (No DAG parse loads the OpenLineage client:
tests/dags/test_dag_import.py counts `openlineage` among the heavy modules.)"""

from __future__ import annotations

import logging
import sys

import pytest

from tasks.lineage import emit
from tasks.lineage.datasets import Lineage


def _never_built() -> Lineage:
    raise AssertionError("lineage was built although OpenLineage is off")


@pytest.fixture
def provider_conf():
    """The provider's conf, which reads the environment on every call under pytest (no cache)."""
    return pytest.importorskip("airflow.providers.openlineage.conf")


def test_nothing_is_built_without_a_transport(provider_conf, monkeypatch):
    monkeypatch.delenv("AIRFLOW__OPENLINEAGE__TRANSPORT", raising=False)
    monkeypatch.delenv("OPENLINEAGE_URL", raising=False)
    monkeypatch.delenv("OPENLINEAGE_CONFIG", raising=False)
    monkeypatch.delenv("AIRFLOW__OPENLINEAGE__CONFIG_PATH", raising=False)
    assert not emit.active()
    assert emit.emit(_never_built) is False


def test_nothing_is_built_when_openlineage_is_disabled(provider_conf, monkeypatch, tmp_path):
    transport = f'{{"type": "file", "log_file_path": "{tmp_path / "events.jsonl"}"}}'
    monkeypatch.setenv("AIRFLOW__OPENLINEAGE__TRANSPORT", transport)
    monkeypatch.setenv("AIRFLOW__OPENLINEAGE__DISABLED", "true")
    assert emit.emit(_never_built) is False


def test_nothing_is_built_without_the_provider(monkeypatch):
    monkeypatch.setitem(sys.modules, "airflow.providers.openlineage", None)
    assert emit.emit(_never_built) is False
    assert emit.report_step("train", ["python", "-m", "tasks.train", "--job", "file:///nowhere"], {}) is False


def test_a_lineage_error_is_logged_and_never_fails_the_task(monkeypatch, caplog):
    monkeypatch.setattr(emit, "active", lambda: True)

    def broken() -> Lineage:
        raise FileNotFoundError("file:///store/jobs/x/train.json")

    with caplog.at_level(logging.WARNING, logger=emit.__name__):
        assert emit.emit(broken) is False
        # A spec that cannot be read: the same, through report_step.
        assert (
            emit.report_step("train", ["--job", "file:///nowhere/train.json"], {"adapter_uri": None}) is False
        )
    assert "no tunerflow datasets" in caplog.text and "train.json" in caplog.text


def test_an_empty_lineage_sends_nothing(monkeypatch):
    monkeypatch.setattr(emit, "active", lambda: True)
    assert emit.emit(Lineage) is False


def test_a_step_without_datasets_reads_nothing(monkeypatch, caplog):
    monkeypatch.setattr(emit, "active", lambda: True)
    argv = ["python", "-m", "tasks.compare_models", "--job", "file:///nowhere/spec.json"]
    with caplog.at_level(logging.WARNING, logger=emit.__name__):
        assert emit.report_step("compare_models", argv, {"models": []}) is False
    assert caplog.text == "", "the spec was not read"
