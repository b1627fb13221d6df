"""The Models pages: every registry, one registry in full, and promote / roll back.

Each action is two steps: a GET page that says exactly what will change (production now -> after) and
carries the pointer's sequence the person saw, and a POST of that page's form (CSRF-checked, edit rights)
that changes production only while the pointer still holds that sequence. A change made redirects (303)
to the registry's page, which says what moved; a change refused (someone moved production first,
nothing to roll back to) shows the confirmation page again with the reason, status 409.
"""

from __future__ import annotations

from typing import Annotated
from urllib.parse import quote

from fastapi import APIRouter, Depends, Form, HTTPException, Request
from fastapi.responses import RedirectResponse

from plugins.tunerflow_ui.auth import Editor, Reader, Viewer, check_csrf, reader
from plugins.tunerflow_ui.rendering import page, root_of
from plugins.tunerflow_ui.stores import Root
from tasks.console.models import model_page, models_index, registry_names
from tasks.console.registry_actions import (
    Outcome,
    ProductionChange,
    plan_promotion,
    plan_rollback,
    promote,
    roll_back,
)

router = APIRouter(dependencies=[Depends(reader)])
SentForm = Annotated[str, Form()]


def _known(root: str, name: str) -> str:
    # Only names the store lists reach a store path: `..` or a made-up name is a 404, not a read.
    if name not in registry_names(root):
        raise HTTPException(404, f"no model registry {name!r}")
    return name


def _expected(sent: str) -> int | None:
    """The pointer sequence the confirmation page carried ('' = nothing was in production)."""
    if not sent:
        return None
    if not sent.isdigit():
        raise HTTPException(400, "the form's production sequence is not a number; reload the page")
    return int(sent)


@router.get("/models")
def models(request: Request, viewer: Reader, root: Root):
    return page(request, "models.html", viewer, "Models", nav="models", index=models_index(root))


@router.get("/models/{name}")
def model(
    request: Request,
    name: str,
    viewer: Reader,
    root: Root,
    changed: int | None = None,
):
    data = model_page(root, name)
    if data is None:
        raise HTTPException(404, f"no model registry {name!r}")
    # The message after an action is read from the history record it names, never from the URL's text.
    move = next((m for m in data.history if m.sequence == changed), None) if changed else None
    return page(request, "model.html", viewer, f"Model registry {name}", nav="models", model=data, move=move)


def _confirm(request: Request, viewer: Viewer, plan: ProductionChange, outcome: Outcome | None = None):
    return page(
        request,
        "model_confirm.html",
        viewer,
        f"{'Promote' if plan.action == 'promote' else 'Roll back'}: {plan.registry}",
        status_code=409 if outcome else 200,
        nav="models",
        plan=plan,
        refused=outcome.message if outcome else None,
    )


def _done(request: Request, name: str, outcome: Outcome) -> RedirectResponse:
    target = f"{root_of(request)}/models/{quote(name, safe='')}?changed={outcome.sequence}"
    return RedirectResponse(target, status_code=303)


def _promotion(root: str, name: str, version: int) -> ProductionChange:
    plan = plan_promotion(root, _known(root, name), version)
    if plan is None:
        raise HTTPException(404, f"model registry {name!r} has no version {version}")
    return plan


@router.get("/models/{name}/versions/{version}/promote")
def confirm_promotion(
    request: Request,
    name: str,
    version: int,
    viewer: Editor,
    root: Root,
):
    return _confirm(request, viewer, _promotion(root, name, version))


@router.post("/models/{name}/versions/{version}/promote")
def promote_version(
    request: Request,
    name: str,
    version: int,
    viewer: Editor,
    root: Root,
    csrf: SentForm = "",
    expected: SentForm = "",
):
    check_csrf(viewer, csrf)
    outcome = promote(root, _known(root, name), version, _expected(expected), viewer.username)
    if outcome.done:
        return _done(request, name, outcome)
    return _confirm(request, viewer, _promotion(root, name, version), outcome)


@router.get("/models/{name}/rollback")
def confirm_rollback(
    request: Request,
    name: str,
    viewer: Editor,
    root: Root,
):
    return _confirm(request, viewer, plan_rollback(root, _known(root, name)))


@router.post("/models/{name}/rollback")
def rollback_production(
    request: Request,
    name: str,
    viewer: Editor,
    root: Root,
    csrf: SentForm = "",
    expected: SentForm = "",
):
    check_csrf(viewer, csrf)
    outcome = roll_back(root, _known(root, name), _expected(expected), viewer.username)
    if outcome.done:
        return _done(request, name, outcome)
    return _confirm(request, viewer, plan_rollback(root, name), outcome)
