"""A run with a search, planned with the project's own writers in a tmp store, and the committed
TrainResults and evaluations its rounds would leave (no training: the planning reads what is committed)."""

from __future__ import annotations

from typing import Any

from tasks.contracts.planning import PlannedJob, RunInfo
from tasks.contracts.prepare import PreparedDataset
from tasks.pipeline.plan import validate_conf
from tasks.storage import layout, store

LR = {"type": "float", "low": 1e-5, "high": 1e-2, "log": True}


def conf(search: dict[str, Any], budget: dict[str, Any] | None = None, models: int = 1) -> dict[str, Any]:
    return {
        "name": "exp",
        "datasets": [{"name": "a", "uri": "builtin:tuna_identity"}],
        "models": [{"name": f"m{i}", "uri": f"/models/m{i}"} for i in range(1, models + 1)],
        "hparams": [{"name": "base", "preset": "lora-fast"}],
        "search": search,
        **({"budget": budget} if budget else {}),
    }


def start(store_root: str, experiment: dict[str, Any], run_id: str = "manual__1") -> tuple[RunInfo, list]:
    """The run validated (experiment.json written) and its datasets as prepared."""
    datasets = validate_conf(experiment, run_id, store_root)
    prepared = [PreparedDataset(name=d.name, uri=f"file:///prepared/{d.name}", kind="chat") for d in datasets]
    info = RunInfo(run_uri=layout.run(store_root, experiment["name"], run_id), store_root=store_root)
    return info, prepared


def commit_train(info: RunInfo, job: PlannedJob, eval_loss: float | None, hours=0.1, steps=8) -> None:
    prefix = layout.step(layout.job(info.run_uri, job.job_id), "train")
    store.ensure_dir(prefix)
    result = {"adapter_uri": "file:///a", "model_uri": None, "eval_loss": eval_loss, "device_hours": hours}
    store.commit(prefix, {**result, "steps": steps, "job_id": job.job_id, "label": job.label})


def fail_train(info: RunInfo, job: PlannedJob) -> None:
    prefix = layout.step(layout.job(info.run_uri, job.job_id), "train")
    store.write_json(store.join(prefix, "error.json"), {"step": "train", "message": "CUDA OOM"})


def commit_evaluate(info: RunInfo, job: PlannedJob, metrics: dict[str, float]) -> None:
    prefix = layout.step(layout.job(info.run_uri, job.job_id), "evaluate")
    store.ensure_dir(prefix)
    store.commit(prefix, {"metrics": metrics})


def spec(job: PlannedJob) -> dict[str, Any]:
    return store.read_json(job.train_spec)
