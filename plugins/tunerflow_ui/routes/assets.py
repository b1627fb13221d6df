"""The vendored scripts and the stylesheet, served to logged-in users only (like every route here)."""

from __future__ import annotations

from fastapi import APIRouter, Depends, HTTPException
from fastapi.responses import FileResponse

from plugins.tunerflow_ui.auth import reader
from plugins.tunerflow_ui.rendering import STATIC

router = APIRouter(dependencies=[Depends(reader)])

MEDIA = {".js": "text/javascript", ".css": "text/css", ".md": "text/plain"}


@router.get("/static/{path:path}", include_in_schema=False)
def static(path: str) -> FileResponse:
    target = (STATIC / path).resolve()
    # Only files inside static/: a path with `..` that leaves it is a 404, not a file read.
    if not target.is_relative_to(STATIC.resolve()) or not target.is_file() or target.suffix not in MEDIA:
        raise HTTPException(404, f"no static file {path!r}")
    return FileResponse(target, media_type=MEDIA[target.suffix], headers={"Cache-Control": "max-age=3600"})
