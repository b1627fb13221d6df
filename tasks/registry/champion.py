"""Champion/challenger: score the current production model on this run's eval rows, with the code that
scored the candidate, so that promotion compares like for like.

Light (stdlib + the store and registry): `plan_champion_scoring` runs in the Airflow worker and writes the
spec of an ordinary `evaluate` step (a subprocess or a pod), whose committed result `promote` reads.
The champion is scored as PyTorch, like the candidate's `metrics`, whatever `scoring.rank_on` says.
"""

from __future__ import annotations

from typing import Any

from tasks.registry import versions as registry
from tasks.storage import layout, store

CHAMPION = "champion"


def scoring_prefix(run_uri: str) -> str:
    return store.join(run_uri, CHAMPION)


def champion_weights(entry: dict[str, Any]) -> dict[str, Any] | None:
    """What `evaluate` loads for a registered version: a full model directory, or the base model plus
    a LoRA adapter. None for versions registered before their weights and model entry were recorded."""
    model = entry.get("model_entry")
    if not model or not (entry.get("model_uri") or entry.get("adapter_uri")):
        return None
    trained = {"model_uri": entry.get("model_uri"), "adapter_uri": entry.get("adapter_uri")}
    return {"model": model, "trained": trained}


def plan_champion_scoring(
    run: dict[str, Any], experiment: dict[str, Any], winner: dict[str, Any]
) -> dict[str, Any]:
    """The champion's evaluate spec (`{"spec_uri", "argv", "version"}`), or `{"skip": reason}`."""
    from tasks.pipeline.plan import step_argv

    promotion = experiment["promotion"]
    if not promotion["enabled"]:
        return {"skip": "promotion.enabled is false"}
    if not promotion.get("rescore_champion", True):
        return {"skip": "promotion.rescore_champion is false: the champion's registered metrics are used"}
    name = promotion["registry_name"] or experiment["name"]
    champion = registry.production(run["store_root"], name)
    if champion is None:
        return {"skip": f"'{name}' has no production model yet: nothing to compare with"}
    weights = champion_weights(champion["entry"])
    if weights is None:
        return {
            "skip": f"champion v{champion['version']} was registered without its model entry and weights; "
            "its registered metrics are compared instead"
        }
    winner_spec = store.read_json(store.join(layout.job(run["run_uri"], winner["job_id"]), "evaluate.json"))
    spec = {
        "step": "evaluate",
        "store_root": run["store_root"],
        "output": store.join(scoring_prefix(run["run_uri"]), f"v{champion['version']}"),
        "job_id": CHAMPION,
        "label": f"{name} v{champion['version']} (champion)",
        "reference": True,
        "champion_version": champion["version"],
        "model": weights["model"],
        "trained": weights["trained"],
        # The winner's rows and scoring, so the two numbers are comparable.
        "dataset": winner_spec["dataset"],
        "scoring": {**winner_spec["scoring"], "rank_on": "pytorch"},
        **({"eval_set": winner_spec["eval_set"]} if winner_spec.get("eval_set") else {}),
    }
    spec_uri = store.join(scoring_prefix(run["run_uri"]), "evaluate.json")
    store.write_json(spec_uri, spec)
    return {"spec_uri": spec_uri, "argv": step_argv("evaluate", spec_uri), "version": champion["version"]}


def champion_score(run_uri: str) -> dict[str, Any] | None:
    """The committed champion scoring of this run: `{"version", "metrics", "scored_on", "n"}`, or None."""
    spec_uri = store.join(scoring_prefix(run_uri), "evaluate.json")
    if not store.exists(spec_uri):
        return None
    spec = store.read_json(spec_uri)
    result = store.committed_result(spec["output"])
    if result is None:
        return None
    return {
        "version": spec["champion_version"],
        "metrics": result["metrics"],
        "scored_on": result.get("scored_on"),
        "n": result.get("n"),
    }


def scoring_failure(run_uri: str) -> str | None:
    """Why scoring the champion failed in this run, from its error.json, or None."""
    spec_uri = store.join(scoring_prefix(run_uri), "evaluate.json")
    if not store.exists(spec_uri):
        return None
    error_uri = store.join(store.read_json(spec_uri)["output"], "error.json")
    return store.read_json(error_uri)["message"] if store.exists(error_uri) else None
