"""The run page, and where Airflow's "Experiment" link on a DAG run lands."""

from __future__ import annotations

from urllib.parse import quote

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import RedirectResponse

from plugins.tunerflow_ui.airflow_runs import run_states
from plugins.tunerflow_ui.auth import COMPARE_DAG, EXPERIMENT_DAG, Viewer, reader
from plugins.tunerflow_ui.rendering import page, root_of
from plugins.tunerflow_ui.stores import store_root
from tasks.console.lookup import find_run
from tasks.console.runs import StateLookup, run_page

router = APIRouter(dependencies=[Depends(reader)])


def run_path(request: Request, experiment: str, run: str) -> str:
    return f"{root_of(request)}/experiments/{quote(experiment, safe='')}/runs/{quote(run, safe='')}"


@router.get("/experiments/{experiment}/runs/{run}", include_in_schema=False)
def run(
    request: Request,
    experiment: str,
    run: str,
    page_number: int = Query(1, alias="page", description="The page of answers."),
    viewer: Viewer = Depends(reader),  # noqa: B008 (FastAPI's dependency idiom)
    root: str = Depends(store_root),
    states: StateLookup = Depends(run_states),  # noqa: B008
):
    view = run_page(root, experiment, run, states, page=page_number)
    return page(request, "run.html", viewer, view.run_id or run, nav="experiments", page=view)


@router.get("/airflow/runs/{dag_id}/{run_id}", include_in_schema=False)
def airflow_run(
    request: Request,
    dag_id: str,
    run_id: str,
    viewer: Viewer = Depends(reader),  # noqa: B008
    root: str = Depends(store_root),
):
    """Airflow's "Experiment" link on a DAG run: the run's page, or a page saying why there is none."""
    if dag_id == COMPARE_DAG:
        return RedirectResponse(f"{root_of(request)}/compare/runs/{quote(run_id, safe='')}", status_code=307)
    found = find_run(root, run_id) if dag_id == EXPERIMENT_DAG else None
    if found is not None:
        return RedirectResponse(run_path(request, *found), status_code=307)
    message = (
        f"Run {run_id!r} has no files in the artifact store yet: its conf may have been refused before "
        "anything was written, or it has not started."
        if dag_id == EXPERIMENT_DAG
        else f"DAG {dag_id!r} has no tunerflow page: only {EXPERIMENT_DAG} and {COMPARE_DAG} runs do."
    )
    return page(
        request,
        "run_notice.html",
        viewer,
        "No page for this run",
        404,
        nav="experiments",
        message=message,
        links=[],
    )
