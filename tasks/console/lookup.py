"""Finding a run or a job from what Airflow knows of it (a run id, a mapped task instance), for the
links Airflow shows on a run and on a task instance."""

from __future__ import annotations

from tasks.console.reading import read_json, side_by_side
from tasks.console.runs import planned_jobs, run_prefix
from tasks.pipeline.plan import job_of_task
from tasks.storage import layout, store

# Mapped tasks with a job page, and the planned list whose position is their map index (a run planned
# before search rounds were recorded: `train` and `evaluate` both followed jobs.json). A search round's
# `round_<k>.train` and `round_<k>.evaluate` are found in the rounds' lists.
JOB_TASKS = {
    "train": "jobs.json",
    "evaluate": "jobs.json",
    "score_base": "references.json",
    "merge": "merges.json",
    "score_merge": "merges.json",
}


def find_run(root: str, run_id: str) -> tuple[str, str] | None:
    """(experiment, run key) of the run Airflow calls `run_id`: the experiment holding
    `runs/<slug(run_id)>`, looked for in every experiment side by side; None when none has it."""
    names = store.list_dir(store.join(root, "experiments"))
    found = side_by_side(lambda name: store.exists(layout.run(root, name, run_id)), names)
    return next(((name, store.slug(run_id)) for name, here in zip(names, found, strict=True) if here), None)


def find_job(root: str, experiment: str, run: str, task_id: str, map_index: int) -> str | None:
    """The job id behind mapped task instance `task_id[map_index]` of a run, or None."""
    if map_index < 0:
        return None
    prefix = run_prefix(root, experiment, run)
    found = job_of_task(prefix, task_id, map_index)
    if found is not None or task_id not in JOB_TASKS:
        return found
    if JOB_TASKS[task_id] == "merges.json":
        merges = read_json(store.join(prefix, "merges.json"))
        listed = merges if isinstance(merges, list) else []
    else:
        jobs, references = planned_jobs(prefix)
        listed = references if JOB_TASKS[task_id] == "references.json" else jobs
    return listed[map_index]["job_id"] if map_index < len(listed) else None
