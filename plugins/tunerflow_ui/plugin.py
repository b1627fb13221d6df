"""The Airflow plugin: the `/tunerflow` FastAPI app and the external views that link its pages into
Airflow's navigation, onto a DAG run ("Experiment") and onto a task instance ("Job").

Registered through the `airflow.plugins` entry point, so `pip install tunerflow[airflow]` and the
Airflow image load it without copying files into the plugins folder. Every Airflow component imports
plugins; building the app imports FastAPI and Jinja only, never the training stack.
"""

from __future__ import annotations

from typing import ClassVar

from airflow.plugins_manager import AirflowPlugin

from plugins.tunerflow_ui.app import URL_PREFIX, create_app

# `href` is relative to Airflow's base URL (no leading slash), so it works behind a proxy on a subpath.
# With `url_route` set, Airflow shows the page inside its own UI (an iframe) at /plugin/<url_route>.
_PREFIX = URL_PREFIX.lstrip("/")
NAV_VIEWS = [
    {
        "name": name,
        "href": f"{_PREFIX}/{path}",
        "url_route": f"tunerflow-{path}",
        "destination": "nav",
        "category": "tunerflow",
    }
    for name, path in (
        ("Experiments", "experiments"),
        ("Models", "models"),
        ("Datasets", "datasets"),
        ("Compare", "compare"),
    )
]
RUN_VIEW = {
    "name": "Experiment",
    "href": f"{_PREFIX}/airflow/runs/{{DAG_ID}}/{{RUN_ID}}",
    "destination": "dag_run",
    "url_route": "tunerflow-run",
}
TASK_INSTANCE_VIEW = {
    "name": "Job",
    "href": f"{_PREFIX}/airflow/task-instances/{{DAG_ID}}/{{RUN_ID}}/{{TASK_ID}}/{{MAP_INDEX}}",
    "destination": "task_instance",
    "url_route": "tunerflow-job",
}


class TunerflowPlugin(AirflowPlugin):
    """tunerflow's pages in the Airflow UI."""

    name = "tunerflow"
    fastapi_apps: ClassVar[list[dict]] = [
        {"app": create_app(), "url_prefix": URL_PREFIX, "name": "tunerflow"}
    ]
    external_views: ClassVar[list[dict]] = [*NAV_VIEWS, RUN_VIEW, TASK_INSTANCE_VIEW]
