"""Who is calling and what they may do, decided by Airflow's own auth manager.

The caller is whoever Airflow says holds the JWT: the `Authorization: Bearer` header when given (REST
clients), else the `_token` cookie the Airflow UI sets at login (the pages, opened inside Airflow's UI
or on their own). No token, or an expired or forged one, is 401; a user who may not read the tunerflow
DAGs is 403 on every route; promote, roll back and compare need edit rights (403 otherwise).

The token itself is kept only to act as the user towards Airflow's REST API (a compare run is
triggered with the caller's identity); it is never rendered, logged or stored.
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass, field
from typing import Annotated

from fastapi import Depends, HTTPException, Request, status

# The DAGs whose access decides what a caller may see and do here.
EXPERIMENT_DAG = "finetune_experiment"
COMPARE_DAG = "compare_models"
COOKIE = "_token"  # airflow.api_fastapi.auth.managers.base_auth_manager.COOKIE_NAME_JWT_TOKEN


@dataclass(frozen=True)
class Viewer:
    """The authenticated caller: a name to show, what they may do, and (private) their token."""

    username: str
    can_edit: bool
    can_compare: bool
    token: str = field(default="", repr=False)
    # A bearer header is sent by a program, never by a browser on its own: no cross-site forgery to
    # guard against, so actions need no form token then.
    from_header: bool = False

    @property
    def csrf(self) -> str:
        """The value a page's form must send back with an action. Derived from the session token, which
        another site cannot read, so a cross-site form post cannot forge it."""
        return hashlib.sha256(b"tunerflow-csrf:" + self.token.encode()).hexdigest()[:32]


def _token(request: Request) -> tuple[str | None, bool]:
    """(the token, whether it came from the Authorization header)."""
    header = request.headers.get("authorization", "")
    scheme, _, credentials = header.partition(" ")
    if scheme.lower() == "bearer" and credentials.strip():
        return credentials.strip(), True
    return request.cookies.get(COOKIE) or None, False


async def _airflow_user(token: str):
    # Airflow is imported here: these modules are also imported by tests that run without an api-server.
    from airflow.api_fastapi.app import get_auth_manager
    from jwt import ExpiredSignatureError, InvalidTokenError

    try:
        return await get_auth_manager().get_user_from_token(token)
    except (ExpiredSignatureError, InvalidTokenError) as error:
        raise HTTPException(status.HTTP_401_UNAUTHORIZED, f"Not authenticated: {error}") from error


def _allowed(user, method: str, dag_id: str, run_entity: bool = False) -> bool:
    from airflow.api_fastapi.app import get_auth_manager
    from airflow.api_fastapi.auth.managers.models.resource_details import DagAccessEntity, DagDetails

    return get_auth_manager().is_authorized_dag(
        method=method,
        user=user,
        access_entity=DagAccessEntity.RUN if run_entity else None,
        details=DagDetails(id=dag_id),
    )


async def reader(request: Request) -> Viewer:
    """Any route's dependency: a logged-in Airflow user who may read the tunerflow DAGs."""
    token, from_header = _token(request)
    if not token:
        raise HTTPException(
            status.HTTP_401_UNAUTHORIZED,
            "Not authenticated: log in to Airflow, or send 'Authorization: Bearer <token>' "
            "(POST /auth/token gives one)",
        )
    user = await _airflow_user(token)
    if not _allowed(user, "GET", EXPERIMENT_DAG):
        raise HTTPException(
            status.HTTP_403_FORBIDDEN, f"Forbidden: reading the '{EXPERIMENT_DAG}' DAG is not allowed"
        )
    return Viewer(
        username=user.get_name(),
        can_edit=_allowed(user, "PUT", EXPERIMENT_DAG),
        can_compare=_allowed(user, "POST", COMPARE_DAG, run_entity=True),
        token=token,
        from_header=from_header,
    )


def editor(viewer: Viewer = Depends(reader)) -> Viewer:  # noqa: B008 (FastAPI's dependency idiom)
    """Promote and roll back: edit rights on the tunerflow DAGs."""
    if not viewer.can_edit:
        raise HTTPException(
            status.HTTP_403_FORBIDDEN,
            f"Forbidden: changing the registry needs edit rights on '{EXPERIMENT_DAG}'",
        )
    return viewer


def comparer(viewer: Viewer = Depends(reader)) -> Viewer:  # noqa: B008
    """Starting a comparison: the right to trigger `compare_models`."""
    if not viewer.can_compare:
        raise HTTPException(
            status.HTTP_403_FORBIDDEN,
            f"Forbidden: starting a comparison needs the right to run '{COMPARE_DAG}'",
        )
    return viewer


def check_csrf(viewer: Viewer, sent: str | None) -> None:
    """Refuse an action whose form did not come from one of our pages (403)."""
    if viewer.from_header:
        return
    if not sent or not hmac.compare_digest(sent, viewer.csrf):
        raise HTTPException(
            status.HTTP_403_FORBIDDEN,
            "Forbidden: the form is stale or came from another site; reload the page",
        )


# The callers as route parameters, declared once for every router.
Reader = Annotated[Viewer, Depends(reader)]
Editor = Annotated[Viewer, Depends(editor)]
Comparer = Annotated[Viewer, Depends(comparer)]
