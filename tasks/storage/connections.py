"""Airflow connections, read the way Airflow's environment-variable secrets backend reads them.

A connection travels from Airflow to a heavy step as one environment variable: on the worker,
`airflow_connection()` resolves it with Airflow's API (any secrets backend: the metadata database,
environment variables, Vault, ...) and the caller puts `{AIRFLOW_CONN_<CONN_ID>: <the connection as
JSON>}` in the step subprocess's environment only; in a Kubernetes pod a Secret sets the same variable.
In the step, `read()` parses it (JSON or URI form) without importing Airflow, which the trainer image
does not have.

Secrets (the password, a URI holding it) are never put in a message, a log line, XCom or a job spec.
Stdlib only at import: the Airflow worker and the DAG processor import this module.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

from tasks.runtime.errors import StepError
from tasks.storage import masking

ENV_PREFIX = "AIRFLOW_CONN_"  # Airflow's environment-variable secrets backend
GENERIC_URI = "conn-type://login:password@host:port/schema?extra_key=value"


class ConnectionInvalid(StepError):
    """A connection's value cannot be parsed (the message names the connection, never its secrets)."""


def env_var(conn_id: str) -> str:
    """The variable Airflow's environment secrets backend reads connection `conn_id` from."""
    return f"{ENV_PREFIX}{conn_id.upper()}"


def read(conn_id: str, environ: Mapping[str, str] | None = None) -> dict[str, Any] | None:
    """The fields of connection `conn_id` from AIRFLOW_CONN_<CONN_ID>; None when the variable is unset."""
    value = (os.environ if environ is None else environ).get(env_var(conn_id))
    if not value:
        return None
    fields = parse_connection(conn_id, value)
    # Read from the variable, not through Airflow: Airflow's masker has not seen it (see masking).
    masking.mask_connection(fields)
    return fields


def airflow_connection(conn_id: str) -> str | None:
    """Connection `conn_id` as Airflow's JSON, resolved by Airflow; None when it is not defined.

    Call it inside an Airflow task: the password and the extra's secrets are masked in the task log. Put
    the value in a subprocess's environment only: never log it, return it from a task (XCom) or write it
    anywhere."""
    from airflow.sdk import BaseHook
    from airflow.sdk.exceptions import AirflowNotFoundException

    try:
        value = BaseHook.get_connection(conn_id).as_json()
    except AirflowNotFoundException:
        return None
    # Airflow masked the password and the extra as one string; the secrets inside the extra too.
    masking.mask_connection(parse_connection(conn_id, value))
    return value


def parse_connection(conn_id: str, value: str, uri_example: str = GENERIC_URI) -> dict[str, Any]:
    """conn_type, host, login, password, schema, port and extra (a dict) of a connection given as
    Airflow's JSON (`{"conn_type": ..., "host": ...}`) or URI (`conn-type://login:password@host:port/
    schema?extra_key=value`, or `?__extra__=<json>`), read the way Airflow reads them."""
    text = value.strip()
    if text.startswith("{"):
        data = json_object(conn_id, "the JSON form", text)
        extra = data.get("extra") or {}
        port = data.get("port")
        try:
            port = int(port) if port not in (None, "") else None
        except (TypeError, ValueError):
            raise ConnectionInvalid(
                f"Airflow connection '{conn_id}': port {port!r} is not a number"
            ) from None
        fields = {key: data.get(key) for key in ("conn_type", "host", "login", "password", "schema")}
        fields.update(
            port=port, extra=json_object(conn_id, "extra", extra) if isinstance(extra, str) else extra
        )
    else:
        fields = _parse_uri(conn_id, text, uri_example)
    if not isinstance(fields["extra"], dict):
        raise ConnectionInvalid(f"Airflow connection '{conn_id}': extra must be a JSON object")
    return fields


def _parse_uri(conn_id: str, uri: str, uri_example: str) -> dict[str, Any]:
    # Never put the URI in a message: it holds the secret.
    protocols = uri.count("://")
    if protocols not in (1, 2):
        raise ConnectionInvalid(
            f"Airflow connection '{conn_id}' is neither JSON nor a URI like {uri_example}"
        )
    conn_type = urlsplit(uri).scheme
    rest = uri[len(conn_type) + 3 :]
    # A host that carries its own protocol is written `conn-type://protocol://host` (Airflow's get_uri).
    parts = urlsplit(rest if protocols == 2 else f"//{rest}")
    try:
        port = parts.port
    except ValueError:
        raise ConnectionInvalid(f"Airflow connection '{conn_id}': the URI's port is not a number") from None
    host = unquote(parts.hostname or "")
    if "/" in host:  # a quoted host holding a URL: urlsplit lower-cases and cuts it, take it verbatim
        host = unquote(parts.netloc.rsplit("@", 1)[-1].split(":", 1)[0])
    if host and protocols == 2:
        host = f"{parts.scheme}://{host}"
    query = dict(parse_qsl(parts.query, keep_blank_values=True))
    extra = json_object(conn_id, "__extra__", query["__extra__"]) if "__extra__" in query else query
    return {
        "conn_type": conn_type.replace("-", "_"),
        "host": host,
        "login": unquote(parts.username) if parts.username else parts.username,
        "password": unquote(parts.password) if parts.password else parts.password,
        "schema": unquote(parts.path[1:]),
        "port": port,
        "extra": extra,
    }


def json_object(conn_id: str, what: str, text: str) -> dict[str, Any]:
    try:
        value = json.loads(text)
    except json.JSONDecodeError as error:
        # The position only: the text may hold the secret.
        raise ConnectionInvalid(
            f"Airflow connection '{conn_id}': {what} is not valid JSON ({error.msg})"
        ) from None
    if not isinstance(value, dict):
        raise ConnectionInvalid(f"Airflow connection '{conn_id}': {what} must be a JSON object")
    return value
