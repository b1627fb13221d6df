"""Champion/challenger: score the current production model on this run's eval rows, with the code that
scored the candidate, so that promotion compares like for like.

Light (stdlib + the store and registry): `plan_champion_scoring` runs in the Airflow worker and writes the
spec of an ordinary `evaluate` step (a subprocess or a pod), whose committed result `promote` reads.
The champion is scored as PyTorch, like the candidate's `metrics`, whatever `scoring.rank_on` says.
"""

from __future__ import annotations

from typing import Any

from tasks.config.promotion import PromotionConfig
from tasks.contracts.evaluate import EvaluateResult, EvaluateSpec, TrainedWeights
from tasks.contracts.planning import ChampionPlan, RunInfo, step_argv
from tasks.contracts.promotion import ChampionScore
from tasks.contracts.selection import LeaderboardRow
from tasks.registry import versions as registry
from tasks.storage import layout, store

CHAMPION = "champion"


def scoring_prefix(run_uri: str) -> str:
    return store.join(run_uri, CHAMPION)


def champion_weights(entry: dict[str, Any]) -> tuple[dict[str, Any], TrainedWeights] | None:
    """What `evaluate` loads for a registered version: (its catalog entry, a full model directory or a
    LoRA adapter). None for versions registered before their weights and model entry were recorded."""
    model = entry.get("model_entry")
    if not model or not (entry.get("model_uri") or entry.get("adapter_uri")):
        return None
    return model, TrainedWeights(model_uri=entry.get("model_uri"), adapter_uri=entry.get("adapter_uri"))


def _spec(run_uri: str) -> EvaluateSpec | None:
    uri = store.join(scoring_prefix(run_uri), "evaluate.json")
    return EvaluateSpec.load(store.read_json(uri), uri) if store.exists(uri) else None


def plan_champion_scoring(run: RunInfo, experiment: dict[str, Any], winner: LeaderboardRow) -> ChampionPlan:
    """The champion's evaluate spec (its URI, argv and version), or why it is not scored."""
    promotion = PromotionConfig.model_validate(experiment["promotion"])
    if not promotion.enabled:
        return ChampionPlan(skip="promotion.enabled is false")
    if not promotion.rescore_champion:
        return ChampionPlan(
            skip="promotion.rescore_champion is false: the champion's registered metrics are used"
        )
    name = promotion.registry_name or experiment["name"]
    champion = registry.production(run.store_root, name)
    if champion is None:
        return ChampionPlan(skip=f"'{name}' has no production model yet: nothing to compare with")
    weights = champion_weights(champion["entry"])
    if weights is None:
        return ChampionPlan(
            skip=f"champion v{champion['version']} was registered without its model entry and weights; "
            "its registered metrics are compared instead"
        )
    winner_prefix = layout.job(run.run_uri, winner.job_id)
    winner_uri = store.join(winner_prefix, "evaluate.json")
    winner_spec = EvaluateSpec.load(store.read_json(winner_uri), winner_uri)
    spec = EvaluateSpec(
        step="evaluate",
        store_root=run.store_root,
        output=store.join(scoring_prefix(run.run_uri), f"v{champion['version']}"),
        job_id=CHAMPION,
        label=f"{name} v{champion['version']} (champion)",
        reference=True,
        champion_version=champion["version"],
        model=weights[0],
        trained=weights[1],
        # The winner's rows and scoring, so the two numbers are comparable.
        dataset=winner_spec.dataset,
        scoring=winner_spec.scoring.model_copy(update={"rank_on": "pytorch"}),
        **({"eval_set": winner_spec.eval_set} if winner_spec.eval_set else {}),
    )
    spec_uri = store.join(scoring_prefix(run.run_uri), "evaluate.json")
    store.write_json(spec_uri, spec.model_dump(mode="json"))
    return ChampionPlan(spec_uri=spec_uri, argv=step_argv("evaluate", spec_uri), version=champion["version"])


def champion_score(run_uri: str) -> ChampionScore | None:
    """The committed champion scoring of this run, or None."""
    spec = _spec(run_uri)
    committed = store.committed_result(spec.output) if spec else None
    if committed is None:
        return None
    result = EvaluateResult.load(committed, f"the champion's scoring at {spec.output}")
    return ChampionScore(
        version=spec.champion_version, metrics=result.metrics, scored_on=result.scored_on, n=result.n
    )


def scoring_failure(run_uri: str) -> str | None:
    """Why scoring the champion failed in this run, from its error.json, or None."""
    spec = _spec(run_uri)
    if spec is None:
        return None
    error_uri = store.join(spec.output, "error.json")
    return store.read_json(error_uri)["message"] if store.exists(error_uri) else None
