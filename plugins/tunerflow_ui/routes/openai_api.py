"""The OpenAI-compatible fine-tuning API, mounted at `/tunerflow/v1` as its own FastAPI app so every
error, 401 included, has OpenAI's shape (`{"error": {"message", "type", "param", "code"}}`).

The caller is the Airflow user whose token the client sends as its API key (`auth.reader`); uploading
needs edit rights on `finetune_experiment`. A job is one `finetune_experiment` run triggered through
Airflow's REST API with the caller's token (so Airflow decides whether they may run it and records who
did), with the job id as the run id; cancel marks the run failed the same way. The logic is in
`tasks.openai_api`; this module only moves requests and Airflow's answers in and out.
"""

from __future__ import annotations

import time
from typing import Any
from urllib.parse import quote

import httpx
from fastapi import APIRouter, Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException

from plugins.tunerflow_ui.auth import EXPERIMENT_DAG, Viewer, editor, reader
from plugins.tunerflow_ui.routes.compare import TIMEOUT_S, AirflowApi, airflow_api
from plugins.tunerflow_ui.stores import store_root
from tasks.openai_api import files, jobs
from tasks.openai_api.job_conf import build_conf, resolved_seed
from tasks.openai_api.objects import ApiError, listing, page, window
from tasks.openai_api.progress import checkpoint_list, events
from tasks.openai_api.requests import CreateJobRequest, parse_request
from tasks.openai_api.runs import RunState

router = APIRouter(dependencies=[Depends(reader)])
ERROR_TYPES = {401: "authentication_error", 403: "permission_error", 404: "invalid_request_error"}
ERROR_CODES = {401: "invalid_api_key", 403: "permission_denied", 404: "not_found"}


def _run_path(job_id: str) -> str:
    return f"/api/v2/dags/{EXPERIMENT_DAG}/dagRuns/{quote(job_id, safe='')}"


def _airflow_error(response: httpx.Response, doing: str) -> ApiError:
    try:
        detail = response.json().get("detail")
    except (ValueError, AttributeError):
        detail = response.text[:500]
    status = response.status_code if response.status_code in (400, 401, 403, 404, 409) else 502
    kind = ERROR_TYPES.get(status, "invalid_request_error" if status < 500 else "api_error")
    return ApiError(f"Airflow refused {doing} ({response.status_code}): {detail}", status=status, kind=kind)


def _call(api: AirflowApi, viewer: Viewer, method: str, path: str, **kwargs: Any) -> httpx.Response:
    """One request to Airflow's REST API as the caller. Synchronous, from FastAPI's thread pool: the
    api-server's event loop also serves the Execution API the running tasks talk to, and must not wait."""
    try:
        with httpx.Client(
            base_url=api.base_url.rstrip("/"),
            transport=api.transport,  # tests' MockTransport serves sync clients too
            headers={"Authorization": f"Bearer {viewer.token}"},
            timeout=TIMEOUT_S,
        ) as client:
            return client.request(method, path, **kwargs)
    except httpx.HTTPError as error:
        raise ApiError(
            f"Airflow's API at {api.base_url} cannot be reached: {error}", status=502, kind="api_error"
        ) from None


def run_state(api: AirflowApi, viewer: Viewer, job_id: str) -> RunState:
    """The job's DAG run and its task instances; state None when Airflow has no such run."""
    response = _call(api, viewer, "GET", _run_path(job_id))
    if response.status_code == 404:
        return RunState()
    if response.status_code != 200:
        raise _airflow_error(response, "reading the run")
    run = response.json()
    tasks = _call(api, viewer, "GET", f"{_run_path(job_id)}/taskInstances", params={"limit": 1000})
    if tasks.status_code != 200:
        raise _airflow_error(tasks, "listing the run's tasks")
    return RunState.model_validate({**run, "tasks": tasks.json().get("task_instances", [])})


def _job(root: str, api: AirflowApi, viewer: Viewer, job_id: str) -> tuple[dict, RunState]:
    record = jobs.load(root, job_id)
    return record, run_state(api, viewer, job_id)


@router.post("/files")
async def upload_file(request: Request, viewer: Viewer = Depends(editor), root: str = Depends(store_root)):  # noqa: B008
    form = await request.form()
    upload, purpose = form.get("file"), form.get("purpose")
    if upload is None or isinstance(upload, str):
        raise ApiError("file: a multipart file field named 'file' is required", param="file")
    if not isinstance(purpose, str):
        raise ApiError(f"purpose: required; use '{files.PURPOSE}'", param="purpose")
    data = await upload.read(files.max_bytes() + 1)
    stored = await run_in_threadpool(files.upload, root, upload.filename or "upload.jsonl", purpose, data)
    return stored.model_dump(mode="json")


@router.get("/files")
def list_files(
    root: str = Depends(store_root),
    purpose: str | None = None,
    after: str | None = None,
    limit: int | None = None,
):
    return page(files.listing(root, purpose), after, limit or 100, lambda f: f.id)


@router.get("/files/{file_id}")
def get_file(file_id: str, root: str = Depends(store_root)):
    return files.get(root, file_id).model_dump(mode="json")


@router.get("/files/{file_id}/content")
def file_content(file_id: str, root: str = Depends(store_root)):
    return Response(files.content(root, file_id), media_type="application/jsonl")


@router.post("/fine_tuning/jobs")
async def create_job(
    request: Request,
    viewer: Viewer = Depends(reader),  # noqa: B008
    root: str = Depends(store_root),
    api: AirflowApi = Depends(airflow_api),  # noqa: B008
):
    try:
        body = await request.json()
    except ValueError:
        raise ApiError("the body must be JSON") from None
    return await run_in_threadpool(_create, parse_request(body), viewer, root, api)


def _create(job_request: CreateJobRequest, viewer: Viewer, root: str, api: AirflowApi) -> dict:
    job_id = jobs.new_id()
    conf, hyper = build_conf(root, job_request, job_id)
    record = jobs.save(root, job_id, job_request, conf, hyper, resolved_seed(conf))
    response = _call(
        api,
        viewer,
        "POST",
        f"/api/v2/dags/{EXPERIMENT_DAG}/dagRuns",
        json={"dag_run_id": job_id, "logical_date": None, "conf": conf},
    )
    if response.status_code not in (200, 201):
        jobs.forget(root, job_id)
        raise _airflow_error(response, "the run")
    return jobs.job_object(root, record, RunState(state="queued")).model_dump(mode="json")


@router.get("/fine_tuning/jobs")
def list_jobs(
    viewer: Viewer = Depends(reader),  # noqa: B008
    root: str = Depends(store_root),
    api: AirflowApi = Depends(airflow_api),  # noqa: B008
    after: str | None = None,
    limit: int | None = None,
):
    chosen, more = window(jobs.ids(root), after, limit)
    found = [jobs.job_object(root, *(_job(root, api, viewer, job_id))) for job_id in chosen]
    return listing(found, more)


@router.get("/fine_tuning/jobs/{job_id}")
def get_job(
    job_id: str,
    viewer: Viewer = Depends(reader),  # noqa: B008
    root: str = Depends(store_root),
    api: AirflowApi = Depends(airflow_api),  # noqa: B008
):
    return jobs.job_object(root, *(_job(root, api, viewer, job_id))).model_dump(mode="json")


# Seconds between the checks that a run marked failed stays failed. The scheduler starts a queued run by
# setting the state it read a moment before, so a run failed while still queued can come back as running
# (seen on SQLite, 2026-12-03: a cancelled job went on to succeed); each check that finds it unfailed marks
# it again. Past the checks (a scheduler slower than 3 s under load, seen in CI), the run's own cancel
# record (jobs.stop_at_start) fails it at validate_conf.
CANCEL_CHECKS_S = (1.0, 2.0, 3.0)


def _fail_run(api: AirflowApi, viewer: Viewer, job_id: str) -> None:
    """Mark the job's run failed through REST (Airflow ends its running tasks), until it holds."""

    def mark() -> None:
        response = _call(api, viewer, "PATCH", _run_path(job_id), json={"state": "failed"})
        if response.status_code != 200:
            raise _airflow_error(response, "cancelling the run")

    mark()
    for pause in CANCEL_CHECKS_S:
        time.sleep(pause)
        current = _call(api, viewer, "GET", _run_path(job_id))
        if current.status_code != 200 or current.json().get("state") != "failed":
            mark()


@router.post("/fine_tuning/jobs/{job_id}/cancel")
def cancel_job(
    job_id: str,
    viewer: Viewer = Depends(reader),  # noqa: B008
    root: str = Depends(store_root),
    api: AirflowApi = Depends(airflow_api),  # noqa: B008
):
    record, run = _job(root, api, viewer, job_id)
    jobs.check_cancellable(jobs.job_object(root, record, run).status, job_id)
    jobs.stop_at_start(root, record)
    if run.state is not None:
        _fail_run(api, viewer, job_id)
    jobs.mark_cancelled(root, job_id)
    return jobs.job_object(root, *(_job(root, api, viewer, job_id))).model_dump(mode="json")


@router.get("/fine_tuning/jobs/{job_id}/events")
def job_events(
    job_id: str,
    viewer: Viewer = Depends(reader),  # noqa: B008
    root: str = Depends(store_root),
    api: AirflowApi = Depends(airflow_api),  # noqa: B008
    after: str | None = None,
    limit: int | None = None,
):
    record, run = _job(root, api, viewer, job_id)
    return page(events(root, record, run, int(time.time())), after, limit, lambda e: e.id)


@router.get("/fine_tuning/jobs/{job_id}/checkpoints")
def job_checkpoints(
    job_id: str, root: str = Depends(store_root), after: str | None = None, limit: int | None = None
):
    return page(checkpoint_list(root, jobs.load(root, job_id)), after, limit or 10, lambda c: c.id)


async def _api_error(request: Request, error: ApiError) -> JSONResponse:
    return JSONResponse(error.body(), status_code=error.status)


async def _http_error(request: Request, error: StarletteHTTPException) -> JSONResponse:
    """The auth dependency's 401/403 and unknown paths, in OpenAI's shape."""
    kind = ERROR_TYPES.get(error.status_code, "invalid_request_error")
    found = ApiError(
        str(error.detail), code=ERROR_CODES.get(error.status_code), status=error.status_code, kind=kind
    )
    return JSONResponse(found.body(), status_code=error.status_code, headers=getattr(error, "headers", None))


async def _validation_error(request: Request, error: RequestValidationError) -> JSONResponse:
    first = error.errors()[0]
    param = ".".join(str(p) for p in first["loc"] if p not in ("query", "path", "body"))
    return await _api_error(request, ApiError(f"{param}: {first['msg']}", param=param))


def create_api(overrides: dict[Any, Any] | None = None) -> FastAPI:
    """The `/v1` app; `overrides` is the parent app's dependency_overrides (the same dict), so a test's
    fake caller, store and Airflow reach these routes too."""
    api = FastAPI(
        title="tunerflow OpenAI-compatible fine-tuning API", docs_url=None, redoc_url=None, openapi_url=None
    )
    if overrides is not None:
        api.dependency_overrides = overrides
    api.add_exception_handler(ApiError, _api_error)
    api.add_exception_handler(StarletteHTTPException, _http_error)
    api.add_exception_handler(RequestValidationError, _validation_error)
    api.include_router(router)
    return api
