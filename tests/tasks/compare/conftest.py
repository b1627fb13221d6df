"""Stores with something to compare: a registry version and an experiment job over the tiny model."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tasks.contracts.evaluate import EvaluateSpec
from tasks.contracts.planning import PlannedJob
from tasks.registry import versions as registry
from tasks.storage import layout, store


def tiny_entry(model_dir: Path) -> dict:
    return {"name": "tiny", "source": {"path": str(model_dir)}, "kind": "uri"}


def register_tiny(root: str, model_dir: Path, name: str = "tiny", **extra) -> dict:
    """A registry version whose weights are the tiny model (a full model over its own entry)."""
    weights = {"model_entry": tiny_entry(model_dir), "model_uri": store.to_uri(model_dir)}
    entry = registry.register(root, name, {**weights, **extra})
    registry.set_production(root, name, entry["version"], None)
    return entry


def prepared_chat_dataset(root: str, name: str = "qa", rows: int = 3) -> dict:
    """A committed prepared dataset version with `rows` chat rows in its test split."""
    prefix = layout.dataset_version(root, name, "v1")
    lines = []
    for n in range(rows):
        messages = [{"role": "user", "content": f"question {n}?"}, {"role": "assistant", "content": f"a{n}"}]
        lines.append(json.dumps({"id": f"test.jsonl:{n}", "messages": messages}))
    store.local_file(store.join(prefix, "test.jsonl")).write_text("\n".join(lines) + "\n")
    result = {"name": name, "uri": prefix, "kind": "chat", "counts": {"test": rows}, "version": "v1"}
    store.commit(prefix, result)
    return result


def experiment_job(root: str, model_dir: Path, dataset: dict) -> str:
    """A finetune run with one job whose evaluate spec names the tiny model (a base-model reference)."""
    run = layout.run(root, "exp", "manual__1")
    job = layout.job(run, "qa--tiny--base")
    spec = EvaluateSpec(
        store_root=root,
        job_id="qa--tiny--base",
        label="qa|tiny|base",
        output=store.join(job, "evaluate"),
        dataset=dataset,
        model=tiny_entry(model_dir),
        scoring={},
        reference=True,
    )
    spec_uri = store.join(job, "evaluate.json")
    store.write_json(spec_uri, spec.model_dump(mode="json"))
    planned = PlannedJob(
        job_id="qa--tiny--base",
        label="qa|tiny|base",
        kind="reference",
        evaluate_spec=spec_uri,
        evaluate_argv=["python", "-m", "tasks.evaluate", "--job", spec_uri],
    )
    store.write_json(store.join(run, "jobs.json"), [planned.model_dump(mode="json")])
    return run


@pytest.fixture
def stocked_store(store_root, tiny_model_dir) -> str:
    register_tiny(store_root, tiny_model_dir)
    experiment_job(store_root, tiny_model_dir, prepared_chat_dataset(store_root))
    return store_root
