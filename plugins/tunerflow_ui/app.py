"""The `/tunerflow` FastAPI app: one router per page family (static files included) and error pages.

`create_app()` is called once when Airflow loads the plugin; tests call it directly and override the
`auth.reader` and `stores.store_root` dependencies.
"""

from __future__ import annotations

import errno
from html import escape

from fastapi import Depends, FastAPI, Request
from fastapi.exceptions import HTTPException
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse

from plugins.tunerflow_ui.auth import reader
from plugins.tunerflow_ui.rendering import root_of
from plugins.tunerflow_ui.routes import ROUTERS, openai_api
from tasks.console.runs import NotFound

URL_PREFIX = "/tunerflow"


def _wants_html(request: Request) -> bool:
    return "text/html" in request.headers.get("accept", "")


async def _http_error(request: Request, error: HTTPException):
    """A browser gets a short page saying what to do; a program gets Airflow's JSON shape."""
    if not _wants_html(request):
        return JSONResponse({"detail": error.detail}, status_code=error.status_code, headers=error.headers)
    airflow = root_of(request)[: -len(URL_PREFIX)] if root_of(request).endswith(URL_PREFIX) else ""
    login = f'<p><a href="{escape(airflow)}/">Log in to Airflow</a></p>' if error.status_code == 401 else ""
    body = (
        f"<!doctype html><meta charset=utf-8><title>tunerflow: {error.status_code}</title>"
        f"<body style='font-family:sans-serif;margin:2em'><h1>{error.status_code}</h1>"
        f"<p>{escape(str(error.detail))}</p>{login}</body>"
    )
    return HTMLResponse(body, status_code=error.status_code)


async def _not_found(request: Request, error: NotFound):
    """What a page's data says is not in the store (an experiment, run, job or file) is a 404."""
    return await _http_error(request, HTTPException(404, str(error)))


async def _name_too_long(request: Request, error: OSError):
    """A name in the address too long for the filesystem (an experiment, run or file name of thousands of
    characters) cannot be in the store: a 404, not a 500. Any other OSError is a real store failure."""
    if error.errno != errno.ENAMETOOLONG:
        raise error
    return await _http_error(
        request, HTTPException(404, "a name in this address is too long to be in the store")
    )


def create_app() -> FastAPI:
    app = FastAPI(
        title="tunerflow",
        description="tunerflow's pages and actions inside Airflow: experiments, runs, jobs, models, "
        "datasets and model comparisons.",
        # No unauthenticated routes at all: the interactive docs and the schema are off.
        docs_url=None,
        redoc_url=None,
        openapi_url=None,
    )
    app.add_exception_handler(HTTPException, _http_error)
    app.add_exception_handler(NotFound, _not_found)
    app.add_exception_handler(OSError, _name_too_long)
    for router in ROUTERS:
        app.include_router(router)
    # The OpenAI-compatible API: its own app, so its errors (401 included) have OpenAI's shape.
    app.mount("/v1", openai_api.create_api(app.dependency_overrides))

    @app.get("/", include_in_schema=False, dependencies=[Depends(reader)])
    def home(request: Request) -> RedirectResponse:
        return RedirectResponse(f"{root_of(request)}/experiments", status_code=307)

    return app
