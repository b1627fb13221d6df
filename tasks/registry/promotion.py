"""Promotion: register the experiment's winner with its lineage; move production when it beats the champion.

Light on purpose (the contracts and the registry): it runs inside the Airflow worker. What it is given is
`tasks.contracts.promotion.PromotionJob`; what it decides, `PromotionDecision` (`champion_rescored` when
the champion was scored on the candidate's rows in this run, `rerun` when replayed).
"""

from __future__ import annotations

from typing import Any

from tasks.contracts.promotion import PromotionDecision, PromotionJob
from tasks.registry import versions as registry
from tasks.runtime.errors import StepError
from tasks.scoring.plugins import lower_is_better

CAS_ATTEMPTS = 5
BASE_MODEL_KEYS = ("family", "params", "kind", "source")


def _fmt(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, int | float) else str(value)


def lineage(job: PromotionJob) -> dict[str, Any]:
    """The registry entry of the job's winner."""
    winner = job.winner
    model = winner.model
    base_model = {"name": model.get("name"), "hub_id": model.get("hub_id")}
    base_model.update({k: model[k] for k in BASE_MODEL_KEYS if k in model})
    return {
        "run_uri": job.run_uri,
        "job_id": winner.job_id,
        "label": winner.label,
        "base_model": base_model,
        # The prepared dataset as the job trained on it: name, uri, counts and `version`, the content hash
        # of its sources and preparation settings (tasks.data.parts.content_version).
        "dataset": dict(winner.dataset),
        "hparams": dict(winner.hparams),
        "metrics": dict(winner.metrics),
        "exports": dict(job.exports),
        "model_uri": job.model_uri,
        "adapter_uri": job.adapter_uri,
        # The catalog entry the weights load with, so a later run can score this version again.
        "model_entry": dict(model),
        "primary": job.primary,
        "checks_passed": job.checks_passed,
        # A merged candidate's parts, so the registry says what the version was merged from.
        **(
            {"merged_from": winner.merged_from, "merge_method": winner.merge_method}
            if winner.merged_from
            else {}
        ),
    }


def _ds(dataset: dict[str, Any]) -> str:
    return f"{dataset.get('name')}@{dataset.get('version')}"


def _same_dataset(a: dict[str, Any] | None, b: dict[str, Any] | None) -> bool:
    a, b = a or {}, b or {}
    return a.get("name") is not None and (a.get("name"), a.get("version")) == (
        b.get("name"),
        b.get("version"),
    )


def decide(
    candidate: dict[str, Any],
    champion: dict[str, Any] | None,
    primary: str,
    margin: float,
    checks_passed: bool,
    rescored: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The gate. `champion` is `registry.production()` (pointer + entry) or None. `rescored` is the
    champion scored in this run on the candidate's rows (`tasks.registry.champion.champion_score`); it is used
    when it is of the version still in production, and makes the comparison like for like.

    Returns {"promoted", "move", "reason", "champion_version", "champion_metric", "candidate_metric",
    "like_for_like"}; `move` says whether the pointer has to be written (False when it already points here).
    """
    cand_metric = (candidate.get("metrics") or {}).get(primary)
    champ_entry = (champion or {}).get("entry") or {}
    champ_metric = (champ_entry.get("metrics") or {}).get(primary)
    out: dict[str, Any] = {
        "champion_version": champion["version"] if champion else None,
        "champion_metric": champ_metric,
        "candidate_metric": cand_metric,
        "like_for_like": None,
    }

    def verdict(promoted: bool, reason: str, move: bool | None = None) -> dict[str, Any]:
        return {**out, "promoted": promoted, "move": promoted if move is None else move, "reason": reason}

    if not checks_passed:
        return verdict(False, "export checks failed: the candidate is registered but not promoted")
    if not isinstance(cand_metric, int | float):
        return verdict(False, f"the candidate has no '{primary}' metric to compare; not promoted")
    if champion is None:
        return verdict(True, "no champion yet: the candidate becomes production")
    if champion["version"] == candidate["version"]:
        return verdict(True, f"version {candidate['version']} is already production", move=False)

    champ_v = champion["version"]
    rescored_metric = ((rescored or {}).get("metrics") or {}).get(primary)
    if (rescored or {}).get("version") == champ_v and isinstance(rescored_metric, int | float):
        champ_metric = out["champion_metric"] = rescored_metric
        out["like_for_like"] = True
        out["champion_rescored"] = True
        return _compare(verdict, primary, cand_metric, champ_metric, champ_v, margin, rescored)
    cand_ds, champ_ds = candidate.get("dataset") or {}, champ_entry.get("dataset") or {}
    if not _same_dataset(cand_ds, champ_ds) or not isinstance(champ_metric, int | float):
        out["like_for_like"] = False
        if not isinstance(champ_metric, int | float):
            why = f"champion v{champ_v} has no '{primary}' metric"
        else:
            why = (
                f"champion v{champ_v} was scored on dataset {_ds(champ_ds)}, the candidate on {_ds(cand_ds)}"
            )
        return verdict(
            True,
            f"{why}; the comparison is not like-for-like, so the candidate is promoted without it "
            "(promotion.rescore_champion scores the champion on the candidate's rows)",
        )

    out["like_for_like"] = True
    return _compare(verdict, primary, cand_metric, champ_metric, champ_v, margin, None)


def _compare(verdict, primary, cand_metric, champ_metric, champ_v, margin, rescored) -> dict[str, Any]:
    lower = lower_is_better(primary)
    gain = (champ_metric - cand_metric) if lower else (cand_metric - champ_metric)
    direction = "lower" if lower else "higher"
    where = ""
    if rescored:
        where = f" (both scored on the same {rescored.get('n')} rows of {rescored.get('scored_on')})"
    if gain > margin:
        return verdict(
            True,
            f"candidate {primary} {_fmt(cand_metric)} beats champion v{champ_v} ({_fmt(champ_metric)}) "
            f"by {_fmt(gain)}{where} ({direction} is better; margin {_fmt(margin)})",
        )
    return verdict(
        False,
        f"candidate {primary} {_fmt(cand_metric)} does not beat champion v{champ_v} ({_fmt(champ_metric)}) "
        f"by more than the margin {_fmt(margin)}{where} ({direction} is better); champion stays",
    )


def _promoted_earlier(root: str, name: str, version: int) -> dict[str, Any] | None:
    """The pointer record of an earlier attempt that already promoted this version (crash before decision)."""
    for record in registry.history(root, name):
        if record.get("version") == version and record.get("action") == "promote":
            return record
    return None


def promote(job: PromotionJob | dict[str, Any]) -> dict[str, Any]:
    """Register the winner and move the production pointer when it beats the champion. Idempotent.
    Returns the decision as `promotion.json` records it."""
    try:
        job = PromotionJob.load(job, "the promote job")
    except ValueError as error:
        raise StepError(str(error)) from None
    root, name, primary = job.store_root, job.registry_name, job.primary
    base = {"registry_uri": registry.registry_uri(root, name), "primary": primary}

    existing = registry.find_versions(root, name, run_uri=job.run_uri, job_id=job.winner.job_id)
    if existing:
        candidate = existing[0]
        recorded = registry.read_decision(root, name, candidate["version"])
        if recorded is not None:
            return PromotionDecision.model_validate({**recorded, "rerun": True}).model_dump(mode="json")
    else:
        candidate = registry.register(root, name, lineage(job))
    version = candidate["version"]

    earlier = _promoted_earlier(root, name, version)
    if earlier is not None:
        replaced = registry.get_version(root, name, earlier["replaced"]) if earlier.get("replaced") else None
        decision = {
            "promoted": True,
            "reason": earlier.get("reason") or f"version {version} was promoted by an earlier attempt",
            "champion_version": earlier.get("replaced"),
            "champion_metric": ((replaced or {}).get("metrics") or {}).get(primary),
            "candidate_metric": (candidate.get("metrics") or {}).get(primary),
            "like_for_like": None,
        }
    else:
        for _ in range(CAS_ATTEMPTS):
            champion = registry.production(root, name)
            rescored = job.champion_score.model_dump(mode="json") if job.champion_score else None
            decision = decide(candidate, champion, primary, job.margin, job.checks_passed, rescored)
            if not decision.pop("move"):
                break
            expected = champion["sequence"] if champion else None
            moved = registry.set_production(
                root, name, version, expected, reason=decision["reason"], actor=job.approved_by
            )
            if moved:
                break
        else:
            decision = {
                **decision,
                "promoted": False,
                "reason": "the production pointer kept moving under concurrent promotions; not promoted",
            }

    result = PromotionDecision.model_validate(
        {**base, **decision, "version": version, "decided_at": registry.now()}
    )
    registry.write_decision(root, name, version, result.model_dump(mode="json"))
    return result.model_dump(mode="json")
