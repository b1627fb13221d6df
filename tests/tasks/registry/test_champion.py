"""Champion/challenger planning: what is scored again, on which rows, and when it is skipped."""

from __future__ import annotations

import pytest

from tasks.config.catalog import CatalogEntry
from tasks.contracts.evaluate import EvaluateSpec
from tasks.contracts.planning import RunInfo
from tasks.contracts.promotion import ChampionScore
from tasks.contracts.selection import LeaderboardRow
from tasks.registry import versions as registry
from tasks.registry.champion import champion_score, plan_champion_scoring, scoring_failure
from tasks.storage import layout, store

MODEL = CatalogEntry(name="tiny", source={"path": "/models/tiny"}, kind="uri").model_dump(mode="json")
WINNER = LeaderboardRow(
    job_id="j1",
    label="tuna|tiny|a",
    kind="train",
    train=None,
    metrics={},
    scored_on=None,
    metrics_jsonl=None,
    status="succeeded",
)


@pytest.fixture
def run(store_root):
    run_uri = layout.run(store_root, "exp", "manual__1")
    winner_spec = EvaluateSpec(
        store_root=store_root,
        job_id="j1",
        label="tuna|tiny|a",
        output=store.join(layout.job(run_uri, "j1"), "evaluate"),
        model=MODEL,
        dataset={"name": "tuna", "uri": "file:///d", "kind": "chat", "counts": {"test": 3}},
        eval_set={
            "name": "eval_questions",
            "uri": f"{run_uri}/eval_questions",
            "kind": "chat",
            "counts": {"test": 2},
        },
        scoring={"metrics": ["rouge_l"], "primary": "rouge_l", "rank_on": "onnx-int8"},
    )
    store.write_json(
        store.join(layout.job(run_uri, "j1"), "evaluate.json"), winner_spec.model_dump(mode="json")
    )
    return RunInfo(run_uri=run_uri, store_root=store_root)


def _experiment(**promotion) -> dict:
    return {"name": "exp", "promotion": {"enabled": True, "registry_name": None, **promotion}}


def _register(root: str, **entry) -> None:
    version = registry.register(root, "exp", {"metrics": {"rouge_l": 0.5}, **entry})["version"]
    assert registry.set_production(root, "exp", version, None, reason="test")


def test_no_champion_means_nothing_to_score(run):
    planned = plan_champion_scoring(run, _experiment(), WINNER)
    assert "no production model yet" in planned.skip


def test_disabled_promotion_or_rescoring_skips(run):
    assert "promotion.enabled" in plan_champion_scoring(run, _experiment(enabled=False), WINNER).skip
    _register(run.store_root, model_entry=MODEL, model_uri="file:///merged")
    skipped = plan_champion_scoring(run, _experiment(rescore_champion=False), WINNER)
    assert "rescore_champion is false" in skipped.skip


def test_a_version_registered_without_its_weights_falls_back_to_registered_metrics(run):
    _register(run.store_root, model_uri="file:///merged")  # an older entry: no model_entry
    planned = plan_champion_scoring(run, _experiment(), WINNER)
    assert "registered metrics are compared" in planned.skip


def test_the_champion_is_scored_on_the_winners_rows_as_pytorch(run):
    _register(run.store_root, model_entry=MODEL, adapter_uri="file:///adapter", model_uri=None)
    planned = plan_champion_scoring(run, _experiment(), WINNER)
    assert planned.version == 1 and planned.argv[:3] == ["python", "-m", "tasks.evaluate"]
    spec = store.read_json(planned.spec_uri)
    assert spec["eval_set"]["name"] == "eval_questions" and spec["dataset"]["name"] == "tuna"
    assert spec["trained"] == {"model_uri": None, "adapter_uri": "file:///adapter"}
    assert spec["model"] == MODEL and spec["scoring"]["rank_on"] == "pytorch"
    assert spec["output"].endswith("/champion/v1")
    assert champion_score(run.run_uri) is None  # nothing committed yet

    store.ensure_dir(spec["output"])
    store.commit(spec["output"], {"metrics": {"rouge_l": 0.25}, "scored_on": "eval_questions", "n": 2})
    assert champion_score(run.run_uri) == ChampionScore(
        version=1,
        metrics={"rouge_l": 0.25},
        scored_on="eval_questions",
        n=2,
    )


def test_a_failed_champion_scoring_says_why(run):
    _register(run.store_root, model_entry=MODEL, model_uri="file:///merged")
    spec = store.read_json(plan_champion_scoring(run, _experiment(), WINNER).spec_uri)
    assert scoring_failure(run.run_uri) is None
    store.write_json(store.join(spec["output"], "error.json"), {"step": "evaluate", "message": "no weights"})
    assert scoring_failure(run.run_uri) == "no weights"
