"""The Datasets pages: registered and prepared-only datasets, one dataset's definition and versions, a
prepared version (card, counts, token lengths, drop reasons, rejected rows by id and reason), its
token-length picture, and one row opened on explicit request.

Row text appears only on the row page, escaped like everything else; the lists never carry it.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException, Query, Request
from fastapi.responses import Response

from plugins.tunerflow_ui.auth import Reader, reader
from plugins.tunerflow_ui.rendering import page
from plugins.tunerflow_ui.stores import Root
from tasks.console.dataset_versions import dataset_version, token_lengths_png, version_row
from tasks.console.datasets import dataset_page, datasets_index

router = APIRouter(dependencies=[Depends(reader)])


def _missing(what: str) -> HTTPException:
    return HTTPException(404, f"no {what} in the store")


@router.get("/datasets")
def datasets(request: Request, viewer: Reader, root: Root):
    return page(request, "datasets.html", viewer, "Datasets", nav="datasets", index=datasets_index(root))


@router.get("/datasets/{name}")
def dataset(request: Request, name: str, viewer: Reader, root: Root):
    data = dataset_page(root, name)
    if data is None:
        raise _missing(f"dataset {name!r}")
    return page(request, "dataset.html", viewer, f"Dataset {name}", nav="datasets", dataset=data)


@router.get("/datasets/{name}/versions/{version}")
def version(
    request: Request,
    name: str,
    version: str,
    viewer: Reader,
    root: Root,
    page_number: Annotated[int, Query(alias="page", ge=1)] = 1,
    reason: str | None = None,
):
    data = dataset_version(root, name, version, page_number, reason or None)
    if data is None:
        raise _missing(f"version {version!r} of dataset {name!r}")
    title = f"Dataset {name} @ {version}"
    return page(request, "dataset_version.html", viewer, title, nav="datasets", data=data)


@router.get("/datasets/{name}/versions/{version}/token_lengths.png")
def token_lengths(name: str, version: str, root: Root) -> Response:
    picture = token_lengths_png(root, name, version)
    if picture is None:
        raise _missing(f"token-length picture for version {version!r} of dataset {name!r}")
    return Response(picture, media_type="image/png", headers={"Cache-Control": "private, max-age=3600"})


@router.get("/datasets/{name}/versions/{version}/rows/{row_id:path}")
def row(request: Request, name: str, version: str, row_id: str, viewer: Reader, root: Root):
    found = version_row(root, name, version, row_id)
    if found is None:
        raise _missing(f"row {row_id!r} in version {version!r} of dataset {name!r}")
    title = f"Row {row_id}"
    response = page(
        request, "dataset_row.html", viewer, title, nav="datasets", name=name, version=version, row=found
    )
    # Row text was opened on purpose: keep it out of shared and browser caches.
    response.headers["Cache-Control"] = "no-store"
    return response
