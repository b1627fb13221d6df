"""Valid step specs for the tests of the skip rules, which read them through their contracts."""

from __future__ import annotations

from typing import Any

from tasks.contracts.evaluate import EvaluateSpec
from tasks.storage import store


def write_evaluate_spec(uri: str, label: str = "tuna|tiny|a", **fields: Any) -> None:
    """An evaluate spec at `uri` for the job `label`; `fields` sets `train_output`, `reference`, ..."""
    job_prefix = uri.rsplit("/", 1)[0]
    spec = EvaluateSpec(
        store_root=job_prefix,
        job_id=job_prefix.rsplit("/", 1)[1],
        label=label,
        output=store.join(job_prefix, "evaluate"),
        dataset={"name": "tuna", "uri": "file:///prepared/tuna", "kind": "chat"},
        model={"name": "tiny", "source": {"path": "/models/tiny"}, "kind": "uri"},
        scoring={},
        **fields,
    )
    store.write_json(uri, spec.model_dump(mode="json"))
