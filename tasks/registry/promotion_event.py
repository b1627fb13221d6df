"""The production-model Asset event a promotion emits: its fixed name and URI, and its extra.

Deployment DAGs schedule on `PRODUCTION_ASSET_URI`; what was promoted (registry, version, weights,
exports, metric) travels in the event's extra.

Light on purpose: `dags/finetune_experiment.py` imports the Asset's name and URI at parse time.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from tasks.config.experiment import load_experiment
from tasks.registry import versions as registry

if TYPE_CHECKING:  # annotations only: dags/finetune_experiment.py imports this module at parse time
    from tasks.contracts.planning import RunInfo
    from tasks.contracts.promotion import PromotionDecision

# The Asset every promotion updates, whatever the registry: an outlet URI is fixed when the DAG is
# parsed, so the registry name, version and model travel in the event's extra (`promotion_event_extra`).
PRODUCTION_ASSET_NAME = "tunerflow_production_model"
PRODUCTION_ASSET_URI = "tunerflow://registry/production"


def promotion_event_extra(run: RunInfo, decision: PromotionDecision) -> dict[str, Any] | None:
    """The extra of the production-model Asset event, or None when nothing was promoted (no event)."""
    if not decision.promoted or decision.version is None:
        return None
    experiment = load_experiment(run.run_uri)
    name = experiment["promotion"]["registry_name"] or experiment["name"]
    entry = registry.get_version(run.store_root, name, decision.version) or {}
    return {
        "registry": name,
        "version": decision.version,
        "registry_uri": decision.registry_uri or registry.registry_uri(run.store_root, name),
        "model_uri": entry.get("model_uri"),
        "adapter_uri": entry.get("adapter_uri"),
        "exports": entry.get("exports") or {},
        "primary": decision.primary,
        "metric": decision.candidate_metric,
        "replaced_version": decision.champion_version,
        "run_uri": run.run_uri,
        "reason": decision.reason,
    }
