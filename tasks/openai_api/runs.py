"""What a job's DAG run holds: its state as Airflow reports it (passed in as plain data, so this module
needs no Airflow), and its training job's outputs in the store (metrics.jsonl, the committed result,
the checkpoints, the registry version the run registered)."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from pydantic import BaseModel, Field

from tasks.console.jobs import Checkpoint, checkpoints
from tasks.pipeline.plan import planned
from tasks.registry import versions as registry
from tasks.storage import layout, store


class TaskState(BaseModel):
    """One task instance of the run, as Airflow's REST API lists it."""

    task_id: str = Field(description="The task's id.")
    map_index: int = Field(-1, description="Its index when mapped, else -1.")
    state: str | None = Field(None, description="Airflow's state; None before it is scheduled.")
    start_date: str | None = Field(None, description="ISO 8601, when it started.")
    end_date: str | None = Field(None, description="ISO 8601, when it ended.")


class RunState(BaseModel):
    """The DAG run of a job as Airflow's REST API gives it; `state` None when Airflow has no such run."""

    state: str | None = Field(None, description="queued, running, success or failed; None: no run.")
    start_date: str | None = Field(None, description="ISO 8601, when it started.")
    end_date: str | None = Field(None, description="ISO 8601, when it ended.")
    tasks: list[TaskState] = Field(default_factory=list, description="Its task instances.")


def seconds(iso: str | None) -> int | None:
    """Unix seconds of an ISO 8601 time (Airflow's dates), None for None or an unreadable one."""
    if not iso:
        return None
    try:
        return int(datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp())
    except ValueError:
        return None


def run_uri(root: str, record: dict[str, Any]) -> str:
    return layout.run(root, record["conf"]["name"], record["id"])


def train_prefix(run: str) -> str | None:
    """The train step's output prefix of the run's (one) training job; None before jobs are planned."""
    jobs = (
        [job for job in planned(run) if job.kind == "train"]
        if store.exists(store.join(run, "jobs.json"))
        else []
    )
    return layout.step(layout.job(run, jobs[0].job_id), "train") if jobs else None


def metrics_records(prefix: str | None) -> list[dict[str, Any]]:
    """The records of the training's metrics.jsonl so far (a line cut mid-write is skipped)."""
    if prefix is None:
        return []
    uri = store.join(prefix, "metrics.jsonl")
    if not store.exists(uri):
        return []
    records = []
    for line in store.backend_for(uri).read_bytes(uri).decode("utf-8", "replace").splitlines():
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(record, dict):
            records.append(record)
    return records


def train_result(prefix: str | None) -> dict[str, Any] | None:
    return store.committed_result(prefix) if prefix else None


def committed_checkpoints(prefix: str | None) -> list[Checkpoint]:
    """The training's committed checkpoints, oldest first."""
    if prefix is None:
        return []
    return checkpoints(prefix.rstrip("/").rpartition("/")[0])


def trained_tokens(prefix: str | None) -> int | None:
    """Training tokens seen: the last checkpoint's count when it is at the last step, else the step's
    tokens per second x its training seconds; None while it trains or when neither is known."""
    result = train_result(prefix)
    if result is None:
        return None
    at_end = [c for c in committed_checkpoints(prefix) if c.step == result.get("steps") and c.tokens_seen]
    if at_end:
        return at_end[-1].tokens_seen
    if result.get("tokens_per_s") and result.get("runtime_s"):
        return round(result["tokens_per_s"] * result["runtime_s"])
    return None


def registered_version(root: str, record: dict[str, Any]) -> str | None:
    """`<registry>-v<N>`: the version the run registered (its winner, whether promoted or not)."""
    conf = record["conf"]
    name = (conf.get("promotion") or {}).get("registry_name") or conf["name"]
    found = registry.find_versions(root, name, run_uri=run_uri(root, record))
    return f"{name}-v{found[0]['version']}" if found else None


def step_error(run: str) -> str | None:
    """The error.json of the training job's train or evaluate step, or of a prepared dataset."""
    prefix = train_prefix(run)
    candidates = [prefix, prefix.rsplit("/", 1)[0] + "/evaluate"] if prefix else []
    for candidate in candidates:
        uri = store.join(candidate, "error.json")
        if store.exists(uri):
            error = store.read_json(uri)
            return f"{error.get('step')}: {error.get('message')}"
    return None
