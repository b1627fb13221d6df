"""The experiments page: every experiment with its runs."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request

from plugins.tunerflow_ui.airflow_runs import run_states
from plugins.tunerflow_ui.auth import Viewer, reader
from plugins.tunerflow_ui.rendering import page
from plugins.tunerflow_ui.stores import store_root
from tasks.console.experiments import experiments_page
from tasks.console.runs import StateLookup

router = APIRouter(dependencies=[Depends(reader)])


@router.get("/experiments", include_in_schema=False)
def experiments(
    request: Request,
    viewer: Viewer = Depends(reader),  # noqa: B008 (FastAPI's dependency idiom)
    root: str = Depends(store_root),
    states: StateLookup = Depends(run_states),  # noqa: B008
):
    view = experiments_page(root, states)
    return page(request, "experiments.html", viewer, "Experiments", nav="experiments", page=view)
