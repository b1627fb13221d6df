"""The Compare pages: pick two to four models and a prompt, start a `compare_models` run as the logged-in
user, and read the answers side by side once it is done.

The run is triggered through Airflow's own REST API with the caller's token (`Authorization: Bearer`),
so Airflow decides whether this user may run the DAG, validates the conf against the DAG's Params (a
400 is shown on the form with Airflow's message) and records who triggered it. The API's base URL is
Airflow's `[api] base_url` (`airflow_api`, a dependency tests replace with a fake).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
from fastapi import APIRouter, Depends, HTTPException, Request
from fastapi.responses import RedirectResponse

from plugins.tunerflow_ui import auth
from plugins.tunerflow_ui.auth import COMPARE_DAG, Viewer, comparer, reader
from plugins.tunerflow_ui.rendering import page, root_of
from plugins.tunerflow_ui.stores import store_root
from tasks.config import allowed_paths
from tasks.console.compare import compare_form, comparison

router = APIRouter(dependencies=[Depends(reader)])

SLOTS = 4  # rows of the form: the DAG takes two to four models
TIMEOUT_S = 30


@dataclass(frozen=True)
class AirflowApi:
    """Where Airflow's REST API is; `transport` lets tests answer instead of a server."""

    base_url: str
    transport: httpx.AsyncBaseTransport | None = None

    def client(self, viewer: Viewer) -> httpx.AsyncClient:
        return httpx.AsyncClient(
            base_url=self.base_url.rstrip("/"),
            transport=self.transport,
            headers={"Authorization": f"Bearer {viewer.token}"},
            timeout=TIMEOUT_S,
        )


def airflow_api() -> AirflowApi:
    """Airflow's `[api] base_url`; unset, this api-server itself on its port (the plugin runs inside it)."""
    # Airflow is imported here: tests build the app without an Airflow configuration to read.
    from airflow.configuration import conf

    base = conf.get("api", "base_url", fallback=None)
    return AirflowApi(base or f"http://localhost:{conf.get('api', 'port', fallback='8080')}")


class FormProblem(ValueError):
    """What the user must fix on the form, shown above it."""


def _number(form: Any, name: str, kind: type, default: Any) -> Any:
    text = (form.get(name) or "").strip()
    if not text:
        return default
    try:
        return kind(text)
    except ValueError:
        raise FormProblem(f"{name}: '{text}' is not a {'whole ' if kind is int else ''}number") from None


def _json_choice(text: str, field: str) -> dict[str, Any]:
    try:
        choice = json.loads(text)
    except json.JSONDecodeError:
        raise FormProblem(f"{field}: not one of the offered choices") from None
    if not isinstance(choice, dict):
        raise FormProblem(f"{field}: not one of the offered choices")
    return choice


def _model_row(form: Any, slot: int, roots: list[Path] | None) -> dict[str, Any] | None:
    picked = {
        "list": (form.get(f"model_{slot}") or "").strip(),
        "path": (form.get(f"path_{slot}") or "").strip(),
        "connection": (form.get(f"connection_{slot}") or "").strip(),
    }
    given = [kind for kind, value in picked.items() if value]
    if not given:
        return None
    if len(given) > 1:
        raise FormProblem(
            f"model {slot}: choose from the list, or type a path, or a connection id: one of them"
        )
    kind = given[0]
    if kind == "list":
        choice = _json_choice(picked["list"], f"model {slot}")
    elif kind == "path":
        # Told on the form at once; compare_models checks it again for a conf sent by REST.
        problem = allowed_paths.uri_problem(f"model {slot}", picked["path"], roots)
        if problem:
            raise FormProblem(problem)
        choice = {"path": picked["path"]}
    else:
        choice = {"connection": picked["connection"]}
        endpoint_model = (form.get(f"endpoint_model_{slot}") or "").strip()
        if endpoint_model:
            choice["model"] = endpoint_model
    label = (form.get(f"label_{slot}") or "").strip()
    if label:
        choice["label"] = label
    temperature = _number(form, f"temperature_{slot}", float, None)
    if temperature is not None:
        choice["temperature"] = temperature
    return choice


def conf_from_form(form: Any, roots: list[Path] | None = None) -> dict[str, Any]:
    """The compare_models conf the form describes (Airflow validates it against the DAG's Params); a
    typed model path must lie under `roots` (every path when None)."""
    models = [row for slot in range(1, SLOTS + 1) if (row := _model_row(form, slot, roots))]
    if len(models) < 2:
        raise FormProblem("choose at least two models")
    prompt = (form.get("prompt") or "").strip()
    conf: dict[str, Any] = {"models": models, "prompts": [prompt] if prompt else []}
    eval_set = (form.get("eval_set") or "").strip()
    if eval_set:
        conf["eval_set"] = {**_json_choice(eval_set, "eval set"), "limit": _number(form, "limit", int, 5)}
    if not prompt and not eval_set:
        raise FormProblem("type a prompt, or choose an eval set")
    for name, kind in (("max_new_tokens", int), ("temperature", float), ("top_p", float), ("seed", int)):
        value = _number(form, name, kind, None)
        if value is not None:
            conf[name] = value
    return conf


def _airflow_message(response: httpx.Response) -> str:
    """Airflow's reason for refusing a trigger: `detail` as a string, or its validation errors."""
    try:
        detail = response.json().get("detail")
    except (ValueError, AttributeError):
        return response.text[:500]
    if isinstance(detail, list):
        return "; ".join(f"{'.'.join(map(str, d.get('loc', [])))}: {d.get('msg')}" for d in detail)
    return str(detail)


async def trigger(api: AirflowApi, viewer: Viewer, conf: dict[str, Any]) -> str:
    """Start a compare_models run as `viewer`; its run id. FormProblem with Airflow's message when refused."""
    try:
        async with api.client(viewer) as client:
            response = await client.post(
                f"/api/v2/dags/{COMPARE_DAG}/dagRuns", json={"logical_date": None, "conf": conf}
            )
    except httpx.HTTPError as error:
        raise FormProblem(f"Airflow's API at {api.base_url} cannot be reached: {error}") from None
    if response.status_code in (200, 201):
        return response.json()["dag_run_id"]
    raise FormProblem(f"Airflow refused the run ({response.status_code}): {_airflow_message(response)}")


async def airflow_state(api: AirflowApi, viewer: Viewer, run_id: str) -> str | None:
    """Airflow's state of the run (queued, running, success, failed), None when it cannot say."""
    try:
        async with api.client(viewer) as client:
            response = await client.get(f"/api/v2/dags/{COMPARE_DAG}/dagRuns/{quote(run_id, safe='')}")
    except httpx.HTTPError:
        return None
    return response.json().get("state") if response.status_code == 200 else None


def _form_page(
    request: Request, viewer: Viewer, root: str, problem: str | None = None, values=None, status=200
):
    return page(
        request,
        "compare.html",
        viewer,
        "Compare models",
        status_code=status,
        nav="compare",
        form=compare_form(root),
        problem=problem,
        values=values or {},
        slots=range(1, SLOTS + 1),
    )


@router.get("/compare")
def compare_page(request: Request, viewer: Viewer = Depends(reader), root: str = Depends(store_root)):  # noqa: B008
    return _form_page(request, viewer, root)


@router.post("/compare")
async def start_comparison(
    request: Request,
    viewer: Viewer = Depends(comparer),  # noqa: B008
    root: str = Depends(store_root),
    api: AirflowApi = Depends(airflow_api),  # noqa: B008
):
    form = await request.form()
    auth.check_csrf(viewer, form.get("csrf"))
    values = {key: value for key, value in form.items() if key != "csrf" and isinstance(value, str)}
    try:
        run_id = await trigger(api, viewer, conf_from_form(form, allowed_paths.server_roots(root)))
    except FormProblem as problem:
        return _form_page(request, viewer, root, str(problem), values, status=400)
    return RedirectResponse(f"{root_of(request)}/compare/runs/{quote(run_id, safe='')}", status_code=303)


@router.get("/compare/runs/{run_id}")
async def comparison_page(
    request: Request,
    run_id: str,
    viewer: Viewer = Depends(reader),  # noqa: B008
    root: str = Depends(store_root),
    api: AirflowApi = Depends(airflow_api),  # noqa: B008
):
    view = comparison(root, run_id)
    if view.state in ("queued", "running"):
        state = await airflow_state(api, viewer, run_id)
        if state is None and view.state == "queued":
            raise HTTPException(404, f"no comparison '{run_id}' in the store or in Airflow")
        if state == "failed":
            view = view.model_copy(
                update={"state": "failed", "error": view.error or "the run failed; its task logs say why"}
            )
        elif state in ("queued", "running"):
            view = view.model_copy(update={"state": state})
    return page(request, "compare_run.html", viewer, f"Comparison {run_id}", nav="compare", view=view)
