"""The job page, its TensorBoard files, and where Airflow's "Job" link on a task instance lands."""

from __future__ import annotations

from urllib.parse import quote

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import RedirectResponse, Response

from plugins.tunerflow_ui.auth import EXPERIMENT_DAG, Viewer, reader
from plugins.tunerflow_ui.rendering import page
from plugins.tunerflow_ui.routes.runs import run_path
from plugins.tunerflow_ui.stores import store_root
from tasks.console.jobs import event_file, job_page
from tasks.console.lookup import JOB_TASKS, find_job, find_run

router = APIRouter(dependencies=[Depends(reader)])


@router.get("/experiments/{experiment}/runs/{run}/jobs/{job_id}", include_in_schema=False)
def job(
    request: Request,
    experiment: str,
    run: str,
    job_id: str,
    page_number: int = Query(1, alias="page", description="The page of answers."),
    viewer: Viewer = Depends(reader),  # noqa: B008 (FastAPI's dependency idiom)
    root: str = Depends(store_root),
):
    view = job_page(root, experiment, run, job_id, page=page_number)
    return page(request, "job.html", viewer, view.label, nav="experiments", page=view)


@router.get("/experiments/{experiment}/runs/{run}/jobs/{job_id}/tensorboard/{name}", include_in_schema=False)
def tensorboard_file(
    experiment: str,
    run: str,
    job_id: str,
    name: str,
    root: str = Depends(store_root),
) -> Response:
    """One event file, to open in a local TensorBoard (only files the committed training lists)."""
    data = event_file(root, experiment, run, job_id, name)
    disposition = f"attachment; filename*=UTF-8''{quote(name, safe='')}"
    return Response(data, media_type="application/octet-stream", headers={"Content-Disposition": disposition})


@router.get("/airflow/task-instances/{dag_id}/{run_id}/{task_id}/{map_index}", include_in_schema=False)
def airflow_task_instance(
    request: Request,
    dag_id: str,
    run_id: str,
    task_id: str,
    map_index: int,
    viewer: Viewer = Depends(reader),  # noqa: B008
    root: str = Depends(store_root),
):
    """Airflow's "Job" link on a task instance: a mapped train, evaluate, score_base, merge or score_merge
    task's job page, or a search round's."""
    found = find_run(root, run_id) if dag_id == EXPERIMENT_DAG else None
    job_id = find_job(root, *found, task_id, map_index) if found else None
    if found and job_id:
        return RedirectResponse(f"{run_path(request, *found)}/jobs/{quote(job_id, safe='')}", status_code=307)
    tasks = ", ".join([*(f"{task}[i]" for task in JOB_TASKS), "round_<k>.train[i]", "round_<k>.evaluate[i]"])
    message = (
        f"{dag_id}: {task_id}[{map_index}] of run {run_id!r} has no job page. Only the mapped "
        f"{EXPERIMENT_DAG} tasks {tasks} have one, once the run's jobs are planned."
    )
    links = [("The run's page", run_path(request, *found))] if found else []
    title = "No job page for this task"
    return page(
        request, "run_notice.html", viewer, title, 404, nav="experiments", message=message, links=links
    )
