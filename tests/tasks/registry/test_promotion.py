"""Promotion gate: champion comparison, margin, lower-is-better, failed checks, idempotency."""

from __future__ import annotations

import pytest

from tasks.registry import versions as registry
from tasks.registry.promotion import promote
from tasks.storage import store


@pytest.fixture
def root(tmp_path):
    return store.to_uri(tmp_path / "store")


def _job(root: str, run: str, value: float, **over) -> dict:
    job = {
        "store_root": root,
        "registry_name": "demo",
        "run_uri": f"{root}/experiments/demo/runs/{run}",
        "winner": {
            "job_id": "j0",
            "label": f"alpaca|tiny|{run}",
            "metrics": {"rouge_l": value, "eval_loss": 2.0 - value},
            "model": {"name": "tiny", "hub_id": "org/tiny", "family": "llama", "source": {"path": "/m"}},
            "dataset": {"name": "alpaca", "version": "v1", "sha256": "abc"},
            "hparams": {"name": "lr2e-4", "learning_rate": 2e-4},
        },
        "primary": "rouge_l",
        "margin": 0.0,
        "model_uri": f"{root}/experiments/demo/runs/{run}/merged",
        "exports": {"onnx": f"{root}/experiments/demo/runs/{run}/onnx"},
        "checks_passed": True,
    }
    for key, value in over.items():
        if key in ("dataset", "metrics"):
            job["winner"][key] = value
        else:
            job[key] = value
    return job


def test_no_champion_promotes_and_records_lineage(root):
    result = promote(_job(root, "r1", 0.3))
    assert result["promoted"] and result["version"] == 1
    assert result["champion_version"] is None and result["candidate_metric"] == 0.3
    assert "no champion" in result["reason"]
    assert result["registry_uri"] == registry.registry_uri(root, "demo")
    entry = registry.production(root, "demo")["entry"]
    assert entry["base_model"] == {
        "name": "tiny",
        "hub_id": "org/tiny",
        "family": "llama",
        "source": {"path": "/m"},
    }
    assert entry["dataset"]["version"] == "v1" and entry["exports"]["onnx"].endswith("/onnx")
    assert entry["hparams"]["learning_rate"] == 2e-4 and entry["model_uri"].endswith("/merged")


def test_better_promotes_worse_is_registered_but_not_promoted(root):
    promote(_job(root, "r1", 0.3))
    worse = promote(_job(root, "r2", 0.2))
    assert not worse["promoted"] and worse["version"] == 2
    assert worse["champion_version"] == 1 and worse["champion_metric"] == 0.3
    assert "does not beat champion v1" in worse["reason"]
    assert registry.production(root, "demo")["version"] == 1
    better = promote(_job(root, "r3", 0.4))
    assert better["promoted"] and better["version"] == 3 and better["like_for_like"]
    assert registry.production(root, "demo")["version"] == 3
    assert len(registry.list_versions(root, "demo")) == 3


def test_margin_must_be_exceeded(root):
    promote(_job(root, "r1", 0.30))
    close = promote(_job(root, "r2", 0.32, margin=0.05))
    assert not close["promoted"] and "margin" in close["reason"]
    equal = promote(_job(root, "r3", 0.30))
    assert not equal["promoted"]
    clear = promote(_job(root, "r4", 0.36, margin=0.05))
    assert clear["promoted"]


def test_lower_is_better_metric(root):
    promote(_job(root, "r1", 0.5, primary="eval_loss"))  # eval_loss 1.5
    higher_loss = promote(_job(root, "r2", 0.4, primary="eval_loss"))  # eval_loss 1.6
    assert not higher_loss["promoted"] and "lower is better" in higher_loss["reason"]
    lower_loss = promote(_job(root, "r3", 0.7, primary="eval_loss"))  # eval_loss 1.3
    assert lower_loss["promoted"]
    assert lower_loss["champion_metric"] == pytest.approx(1.5)
    assert lower_loss["candidate_metric"] == pytest.approx(1.3)


def test_failed_checks_are_refused_but_registered(root):
    promote(_job(root, "r1", 0.3))
    result = promote(_job(root, "r2", 0.9, checks_passed=False))
    assert not result["promoted"] and "checks failed" in result["reason"]
    assert result["version"] == 2 and registry.get_version(root, "demo", 2)["checks_passed"] is False
    assert registry.production(root, "demo")["version"] == 1


def test_different_dataset_version_promotes_but_says_so(root):
    promote(_job(root, "r1", 0.9))
    result = promote(_job(root, "r2", 0.1, dataset={"name": "alpaca", "version": "v2"}))
    assert result["promoted"] and result["like_for_like"] is False
    assert "not like-for-like" in result["reason"] and "alpaca@v1" in result["reason"]
    assert registry.production(root, "demo")["version"] == 2


def test_rerun_is_idempotent(root):
    first = promote(_job(root, "r1", 0.3))
    again = promote(_job(root, "r1", 0.3))
    assert again["rerun"] and again["version"] == first["version"] and again["promoted"]
    assert len(registry.list_versions(root, "demo")) == 1
    assert len(registry.history(root, "demo")) == 1
    refused = promote(_job(root, "r2", 0.1))
    assert promote(_job(root, "r2", 0.1))["reason"] == refused["reason"]
    assert len(registry.list_versions(root, "demo")) == 2


def test_rerun_after_crash_between_pointer_move_and_decision(root):
    first = promote(_job(root, "r1", 0.3))
    decision = store.local_path(registry.registry_uri(root, "demo")) / "versions" / "1" / "decision.json"
    decision.unlink()
    again = promote(_job(root, "r1", 0.3))
    assert again["promoted"] and again["version"] == first["version"]
    assert len(registry.history(root, "demo")) == 1 and len(registry.list_versions(root, "demo")) == 1


def test_rerun_after_crash_between_register_and_decision(root):
    promote(_job(root, "r1", 0.3))
    registry.register(
        root,
        "demo",
        {
            "run_uri": _job(root, "r2", 0.5)["run_uri"],
            "job_id": "j0",
            "metrics": {"rouge_l": 0.5},
            "dataset": {"name": "alpaca", "version": "v1"},
        },
    )
    result = promote(_job(root, "r2", 0.5))
    assert result["promoted"] and result["version"] == 2
    assert len(registry.list_versions(root, "demo")) == 2


def test_a_champion_rescored_on_the_candidates_rows_is_compared_like_for_like(root):
    promote(_job(root, "r1", 0.9, dataset={"name": "alpaca", "version": "v1"}))
    # Registered metrics say the champion is far better, but on this run's rows it scores 0.3.
    rescored = {"version": 1, "metrics": {"rouge_l": 0.3}, "scored_on": "eval_questions", "n": 12}
    job = _job(root, "r2", 0.5, dataset={"name": "alpaca", "version": "v2"}, champion_score=rescored)
    out = promote(job)
    assert out["promoted"] is True and out["like_for_like"] is True and out["champion_rescored"] is True
    assert out["champion_metric"] == 0.3 and out["candidate_metric"] == 0.5
    assert "same 12 rows of eval_questions" in out["reason"]
    assert registry.production(root, "demo")["version"] == 2


def test_a_rescored_champion_must_still_be_beaten_by_the_margin(root):
    promote(_job(root, "r1", 0.4))
    rescored = {"version": 1, "metrics": {"rouge_l": 0.48}, "scored_on": "tuna", "n": 5}
    out = promote(_job(root, "r2", 0.5, margin=0.05, champion_score=rescored))
    assert out["promoted"] is False and out["champion_metric"] == 0.48
    assert "does not beat champion v1" in out["reason"] and registry.production(root, "demo")["version"] == 1


def test_a_score_of_a_version_no_longer_in_production_is_not_used(root):
    promote(_job(root, "r1", 0.4))
    promote(_job(root, "r2", 0.6))  # production moved to v2 after the champion (v1) was scored
    stale = {"version": 1, "metrics": {"rouge_l": 0.1}, "scored_on": "tuna", "n": 5}
    out = promote(_job(root, "r3", 0.5, champion_score=stale))
    assert out["champion_version"] == 2 and out["champion_metric"] == 0.6
    assert out["promoted"] is False and "champion_rescored" not in out


def test_lineage_keeps_what_a_later_run_needs_to_score_the_version_again(root):
    promote(_job(root, "r1", 0.4, model_uri=None, adapter_uri=f"{root}/adapter"))
    entry = registry.production(root, "demo")["entry"]
    assert entry["adapter_uri"] == f"{root}/adapter" and entry["model_uri"] is None
    assert entry["model_entry"]["source"] == {"path": "/m"}


def test_lineage_records_the_prepared_dataset_version_base_model_hparams_metrics_and_exports(root):
    # The dataset record as plan_jobs hands it to the train spec: prepare_dataset's result, whose
    # `version` is the content hash of the settings and source fingerprints.
    prepared = {
        "name": "alpaca",
        "version": "3f2a9c0d81b4e6a7",
        "uri": f"{root}/datasets/alpaca/3f2a9c0d81b4e6a7",
        "kind": "chat",
        "counts": {"train": 90, "validation": 5, "test": 5},
    }
    out = promote(_job(root, "r1", 0.4, dataset=prepared))
    entry = registry.get_version(root, "demo", out["version"])
    assert set(registry.LINEAGE_KEYS) <= set(entry)
    assert entry["dataset"] == prepared
    assert entry["base_model"]["hub_id"] == "org/tiny" and entry["base_model"]["family"] == "llama"
    assert entry["hparams"] == {"name": "lr2e-4", "learning_rate": 2e-4}
    assert entry["metrics"] == {"rouge_l": 0.4, "eval_loss": pytest.approx(1.6)}
    assert entry["exports"] == {"onnx": f"{root}/experiments/demo/runs/r1/onnx"}
    assert entry["run_uri"].endswith("/runs/r1") and entry["job_id"] == "j0" and entry["created_at"]


def test_promotion_on_an_s3_registry(aws_env):
    import uuid

    from tasks.storage import s3

    bucket = f"promote-{uuid.uuid4().hex[:12]}"
    s3.client().create_bucket(Bucket=bucket)
    root = f"s3://{bucket}/store"
    assert promote(_job(root, "r1", 0.3))["promoted"]
    worse = promote(_job(root, "r2", 0.2))
    assert not worse["promoted"] and registry.production(root, "demo")["version"] == 1
    better = promote(_job(root, "r3", 0.4))
    assert better["promoted"] and better["champion_version"] == 1
    assert registry.production(root, "demo")["entry"]["dataset"]["sha256"] == "abc"
    # A rerun after a crash between the pointer move and the decision neither registers nor moves again.
    s3.client().delete_object(Bucket=bucket, Key="store/registry/demo/versions/3/decision.json")
    again = promote(_job(root, "r3", 0.4))
    assert again["promoted"] and again["version"] == 3
    assert [r["version"] for r in registry.history(root, "demo")] == [1, 3]
    assert promote(_job(root, "r2", 0.2))["rerun"] is True
    assert len(registry.list_versions(root, "demo")) == 3
