"""What the promote task read and wrote: the model it registered -> its registry version and, when it
was promoted, the registry's production pointer.

Inputs: the registered weights (the export's merged model, else the trained adapter or model), each
exported format, and the champion's registry version it was compared with. Outputs: the registry version
(`registry/<name>/versions/<n>`) and, when promoted, `registry/<name>/production.json`, each with the
`tunerflow_registry` facet (version, metrics, the champion comparison) and the version as `version`.
"""

from __future__ import annotations

from typing import Any

from tasks.lineage.datasets import Lineage, input_dataset, output_dataset
from tasks.registry import versions
from tasks.storage import store

POINTER = "production.json"


def promotion_lineage(store_root: str, decision: dict[str, Any]) -> Lineage:
    """The lineage of a promotion decision (`promotion.json`); empty when nothing was registered
    (promotion disabled, or refused before registering)."""
    # The contract and our facets load where lineage is built, as the step libraries do.
    from tasks.contracts.promotion import PromotionDecision
    from tasks.lineage.facets import ModelFacet, RegistryFacet

    decided = PromotionDecision.model_validate(decision)
    if decided.version is None or not decided.registry_uri:
        return Lineage()
    registry_uri = decided.registry_uri.rstrip("/")
    name = registry_uri.rsplit("/", 1)[-1]
    entry = versions.get_version(store_root, name, decided.version) or {}
    base_model = (entry.get("base_model") or {}).get("name")
    inputs = []
    weights = entry.get("model_uri") or entry.get("adapter_uri")
    if weights:
        role = "model" if entry.get("model_uri") else "adapter"
        inputs.append(
            input_dataset(weights, ModelFacet(role=role, baseModel=base_model, job=entry.get("label")))
        )
    for fmt, uri in sorted((entry.get("exports") or {}).items()):
        inputs.append(input_dataset(uri, ModelFacet(role=fmt, baseModel=base_model, job=entry.get("label"))))
    if decided.champion_version is not None:
        champion_uri = store.join(registry_uri, "versions", str(decided.champion_version))
        inputs.append(input_dataset(champion_uri, version=str(decided.champion_version)))
    facet = RegistryFacet(
        registry=name,
        version=decided.version,
        promoted=decided.promoted,
        reason=decided.reason,
        metrics=dict(entry.get("metrics") or {}),
        primary=decided.primary,
        candidateMetric=decided.candidate_metric,
        championVersion=decided.champion_version,
        championMetric=decided.champion_metric,
        likeForLike=decided.like_for_like,
    )
    version = str(decided.version)
    outputs = [output_dataset(store.join(registry_uri, "versions", version), facet, version=version)]
    if decided.promoted:
        outputs.append(output_dataset(store.join(registry_uri, POINTER), facet, version=version))
    return Lineage(inputs=inputs, outputs=outputs)
