"""The jobs pages (to be filled in)."""

from __future__ import annotations

from fastapi import APIRouter, Depends

from plugins.tunerflow_ui.auth import reader

router = APIRouter(dependencies=[Depends(reader)])
