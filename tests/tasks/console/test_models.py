"""The Models pages' view models and actions on a registry written by the registry's own functions:
versions with lineage and export checks, the production history, and promote / roll back through the
pointer's compare-and-swap (a stale plan loses cleanly)."""

from __future__ import annotations

import pytest

from tasks.console import models, registry_actions
from tasks.registry import production
from tasks.registry import versions as registry
from tests.fixtures import registry_store as fx


@pytest.fixture
def root(tmp_path) -> str:
    root = (tmp_path / "store").as_uri()
    fx.build_registry(root)
    return root


def test_the_index_lists_every_registry_with_its_versions_and_production(root):
    fx.build_registry(root, name="other")
    index = models.models_index(root)
    assert [r.name for r in index.registries] == ["other", "tuna"]
    tuna = index.registries[1]
    assert tuna.production == 2
    assert [(v.version, v.in_production) for v in tuna.versions] == [(3, False), (2, True), (1, False)]
    assert tuna.versions[0].primary == "rouge_l" and tuna.versions[0].primary_value == pytest.approx(0.8)


def test_a_version_has_its_lineage_checks_run_and_decision(root):
    page = models.model_page(root, fx.REGISTRY)
    assert (page.production, page.sequence, page.rollback_to) == (2, 2, 1)
    newest = page.versions[0]
    assert newest.version == 3 and not newest.in_production
    assert (newest.base_model, newest.base_hub_id) == ("tiny", "org/tiny")
    assert (newest.dataset, newest.dataset_version) == (fx.DATASET, fx.VERSION)
    assert newest.hparams == {"learning_rate": 0.001, "lora_r": 8}
    assert newest.metrics["rouge_l"] == pytest.approx(0.8)
    assert newest.run.experiment == fx.EXPERIMENT and newest.run.job_id == "tuna--tiny--lr3"
    assert newest.run.run == "manual__2026-01-02T03-04-05-00-00"
    onnx, int8 = newest.exports
    assert (onnx.format, onnx.passed, int8.format, int8.passed) == ("onnx", True, "onnx-int8", False)
    assert int8.problems == ["rouge_l dropped 0.09 > 0.05"] and int8.metric_drop == pytest.approx(0.09)
    assert newest.decision.promoted is False and "does not beat" in newest.decision.reason


def test_production_history_says_what_moved_from_which_version_to_which(root):
    history = models.model_page(root, fx.REGISTRY).history
    assert [(m.sequence, m.replaced, m.version, m.action, m.actor) for m in history] == [
        (2, 1, 2, "promote", None),
        (1, None, 1, "promote", None),
    ]
    assert history[1].reason == "no champion yet: the candidate becomes production"


def test_an_unknown_registry_has_no_page(root):
    assert models.model_page(root, "nope") is None
    assert models.model_page(root, "..") is None


def test_an_entry_without_lineage_keys_still_renders(root):
    registry.register(root, "bare", {})
    [version] = models.model_page(root, "bare").versions
    assert version.run is None and version.exports == [] and version.decision is None


def test_promote_moves_production_and_records_who(root):
    plan = registry_actions.plan_promotion(root, fx.REGISTRY, 3)
    assert (plan.current, plan.target, plan.expected, plan.problem) == (2, 3, 2, None)
    outcome = registry_actions.promote(root, fx.REGISTRY, 3, plan.expected, actor="ada")
    assert outcome.done and outcome.sequence == 3 and "is now version 3" in outcome.message
    latest = registry.history(root, fx.REGISTRY)[-1]
    assert (latest["version"], latest["replaced"], latest["actor"]) == (3, 2, "ada")


def test_a_stale_plan_loses_to_a_concurrent_promotion_and_writes_nothing(root):
    plan = registry_actions.plan_promotion(root, fx.REGISTRY, 3)
    # Someone else moves production between the confirmation page and the click.
    assert registry.set_production(root, fx.REGISTRY, 1, expected=plan.expected, actor="grace")
    outcome = registry_actions.promote(root, fx.REGISTRY, 3, plan.expected, actor="ada")
    assert not outcome.done
    assert "changed since this page was shown" in outcome.message and "version 1" in outcome.message
    assert "grace" in outcome.message
    assert registry.pointer(root, fx.REGISTRY)["version"] == 1


def test_promoting_the_production_version_changes_nothing(root):
    plan = registry_actions.plan_promotion(root, fx.REGISTRY, 2)
    assert "already in production" in plan.problem
    outcome = registry_actions.promote(root, fx.REGISTRY, 2, plan.expected, actor="ada")
    assert not outcome.done and len(registry.history(root, fx.REGISTRY)) == 2


def test_roll_back_returns_to_the_previous_version_then_says_there_is_none(root):
    plan = registry_actions.plan_rollback(root, fx.REGISTRY)
    assert (plan.current, plan.target) == (2, 1)
    outcome = registry_actions.roll_back(root, fx.REGISTRY, plan.expected, actor="ada")
    assert outcome.done and "rolled back to version 1" in outcome.message
    latest = registry.history(root, fx.REGISTRY)[-1]
    assert (latest["action"], latest["version"], latest["actor"]) == ("rollback", 1, "ada")
    again = registry_actions.plan_rollback(root, fx.REGISTRY)
    assert "no earlier production version" in again.problem
    refused = registry_actions.roll_back(root, fx.REGISTRY, again.expected, actor="ada")
    assert not refused.done and "no earlier production version" in refused.message


def test_a_stale_rollback_plan_writes_nothing(root):
    plan = registry_actions.plan_rollback(root, fx.REGISTRY)
    assert registry.set_production(root, fx.REGISTRY, 3, expected=plan.expected)
    outcome = registry_actions.roll_back(root, fx.REGISTRY, plan.expected, actor="ada")
    assert not outcome.done and registry.pointer(root, fx.REGISTRY)["version"] == 3


def test_a_promotion_landing_during_the_rollback_wins_and_the_rollback_writes_nothing(root, monkeypatch):
    plan = registry_actions.plan_rollback(root, fx.REGISTRY)
    real = production._swap

    def racing(records, expected, make):
        # Someone promotes version 3 after the plan was checked, just before the rollback's write.
        monkeypatch.setattr(production, "_swap", real)
        assert registry.set_production(root, fx.REGISTRY, 3, expected=plan.expected, actor="grace")
        return real(records, expected, make)

    monkeypatch.setattr(production, "_swap", racing)
    outcome = registry_actions.roll_back(root, fx.REGISTRY, plan.expected, actor="ada")
    assert not outcome.done and "now version 3 (moved by grace)" in outcome.message
    assert [r["actor"] for r in registry.history(root, fx.REGISTRY)][-1] == "grace"
    assert registry.pointer(root, fx.REGISTRY)["version"] == 3


def test_the_model_page_reads_an_s3_registry(s3_store_root):
    root = s3_store_root
    fx.build_registry(root)
    page = models.model_page(root, fx.REGISTRY)
    assert page.production == 2 and [e.passed for e in page.versions[0].exports] == [True, False]


def test_a_gguf_export_is_shown_as_one_row_per_checked_file():
    entry = {"exports": {"gguf": "s3://b/run/export/gguf", "onnx": "s3://b/run/export/onnx"}}
    checks = {
        "formats": {
            "onnx": {"passed": True, "size_bytes": 5},
            "gguf-f16": {"uri": "s3://b/run/export/gguf/m-f16.gguf", "passed": True, "size_bytes": 3},
            "gguf-q8_0": {"uri": "s3://b/run/export/gguf/m-q8_0.gguf", "passed": False, "problems": ["low"]},
        }
    }
    rows = models._export_checks(entry, checks)
    assert [(r.format, r.uri, r.passed) for r in rows] == [
        ("gguf-f16", "s3://b/run/export/gguf/m-f16.gguf", True),
        ("gguf-q8_0", "s3://b/run/export/gguf/m-q8_0.gguf", False),
        ("onnx", "s3://b/run/export/onnx", True),
    ]
    assert rows[1].problems == ["low"]
    # Not checked yet: the format's own row, unchecked.
    assert [(r.format, r.passed) for r in models._export_checks(entry, None)] == [
        ("gguf", None),
        ("onnx", None),
    ]
