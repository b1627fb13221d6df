"""A finished run up to promotion, written with the project's own writers: the conf validated and recorded,
two jobs planned, their train and evaluate results committed (with predictions.jsonl and the eval split
they answered), the leaderboard written. What `approve_promotion` and `promote` read."""

from __future__ import annotations

import json
from typing import Any

from tasks.contracts.planning import RunInfo
from tasks.contracts.prepare import PreparedDataset
from tasks.contracts.selection import LeaderboardRow, Selection
from tasks.pipeline.plan import plan_jobs, validate_conf
from tasks.pipeline.selection import export_specs, leaderboard
from tasks.storage import layout, store

RUN_ID = "manual__2026-11-23T10:00:00+00:00"
NAME = "appr"
QUESTIONS = ["What is your name? <b>bold</b>", "Who built you?", "Which licence?", "A fourth question?"]


def conf(**promotion: Any) -> dict[str, Any]:
    return {
        "name": NAME,
        "datasets": [{"name": "tuna", "uri": "builtin:tuna_identity"}],
        "models": [{"name": "tiny", "uri": "/models/tiny"}],
        "hparams": [{"name": "a", "preset": "lora-fast"}, {"name": "b", "preset": "lora-fast"}],
        "export": {"enabled": False},
        "promotion": {"require_approval": True, "approval_timeout_hours": 2, **promotion},
    }


def _jsonl(uri: str, records: list[dict[str, Any]]) -> None:
    path = store.local_file(uri)
    path.write_text("".join(json.dumps(record) + "\n" for record in records))


def write_run(store_root: str, metrics: tuple[float, float] = (0.4, 0.7), **promotion: Any) -> RunInfo:
    """The run of `conf(**promotion)` with job b winning on rouge_l (by default)."""
    validate_conf(conf(**promotion), RUN_ID, store_root)
    run = RunInfo(run_uri=layout.run(store_root, NAME, RUN_ID), store_root=store_root)
    prepared_uri = store.join(store_root, "prepared", "tuna")
    rows = [
        {
            "id": f"tuna:{i}",
            "messages": [{"role": "user", "content": q}, {"role": "assistant", "content": "x"}],
        }
        for i, q in enumerate(QUESTIONS)
    ]
    _jsonl(store.join(prepared_uri, "test.jsonl"), rows)
    jobs = plan_jobs(run, [PreparedDataset(name="tuna", uri=prepared_uri, kind="chat")])
    for job, value in zip(jobs, metrics, strict=True):
        prefix = layout.job(run.run_uri, job.job_id)
        train = layout.step(prefix, "train")
        store.ensure_dir(train)
        store.commit(train, {"adapter_uri": store.join(train, "adapter"), "model_uri": None})
        evaluate = layout.step(prefix, "evaluate")
        answers = [
            {"id": f"tuna:{i}", "prediction": f"answer {i} of {job.label} | *{i}*", "reference": f"ref {i}"}
            for i in range(len(QUESTIONS))
        ]
        _jsonl(store.join(evaluate, "predictions.jsonl"), answers)
        store.commit(evaluate, {"metrics": {"rouge_l": value}, "split": "test", "scored_on": "tuna"})
    leaderboard(run.run_uri, jobs, "rouge_l")
    return run


def selection_of(run: RunInfo) -> Selection:
    board = store.read_json(store.join(run.run_uri, "leaderboard.json"))
    return export_specs(run.run_uri, run.store_root, LeaderboardRow.model_validate(board["winner"]))
