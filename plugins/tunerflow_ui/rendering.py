"""The one Jinja environment of the pages and the helpers every page uses.

Autoescaping is on for every template, so any text from a conf, a dataset row, a job name or a model's
answer is rendered as text; nothing here marks such text safe. Charts are drawn in the browser by the
vendored Chart.js from JSON embedded with `tojson` (which escapes `<`, `>` and `&`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fastapi import Request
from fastapi.responses import HTMLResponse
from jinja2 import Environment, FileSystemLoader, StrictUndefined

from plugins.tunerflow_ui.auth import Viewer
from tasks.pipeline.report_data import fmt

TEMPLATES = Path(__file__).parent / "templates"
STATIC = Path(__file__).parent / "static"


def _environment() -> Environment:
    env = Environment(
        loader=FileSystemLoader(TEMPLATES),
        autoescape=True,
        undefined=StrictUndefined,  # a typo in a template fails its test instead of rendering blank
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["fmt"] = fmt
    return env


ENV = _environment()


def root_of(request: Request) -> str:
    """The app's own prefix as the browser sees it (`/tunerflow`, or `/airflow/tunerflow` behind a proxy
    on a subpath): every link and asset URL starts with it."""
    return request.scope.get("root_path", "").rstrip("/")


def airflow_root(request: Request) -> str:
    """Airflow's own base path (the app's prefix without `/tunerflow`): links into Airflow's grid."""
    root = root_of(request)
    return root[: -len("/tunerflow")] if root.endswith("/tunerflow") else ""


def page(request: Request, template: str, viewer: Viewer, title: str, status_code: int = 200, **context: Any):
    """Render `template` inside the common layout (navigation, who is logged in)."""
    html = ENV.get_template(template).render(
        root=root_of(request),
        airflow=airflow_root(request),
        viewer=viewer,
        title=title,
        **context,
    )
    return HTMLResponse(html, status_code=status_code)
