"""Where runs are tracked: the MLflow connection (Airflow's), read into an `MlflowTarget`.

The connection (`tunerflow_mlflow`, or the id in `TUNERFLOW_MLFLOW_CONN_ID`):

- host: the tracking URI (`http://mlflow.internal:5000`; a bare host name is completed with the
  connection type or schema as the protocol (default https) and the port);
- login and password: MLFLOW_TRACKING_USERNAME / MLFLOW_TRACKING_PASSWORD (basic auth); a password
  without a login is a bearer token (MLFLOW_TRACKING_TOKEN);
- extra: `registry_uri` (the Model Registry, when not the tracking server), `experiment_name` (the MLflow
  experiment; default the tunerflow experiment's name), `insecure_tls` (true skips TLS verification).

The credentials never leave the SecretStr except into the environment of the block that calls MLflow
(`credentials_env`); messages name the tracking URI without any user:password part.

Stdlib and pydantic only: the Airflow worker imports this module.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from pydantic import BaseModel, ConfigDict, Field, SecretStr

from tasks.runtime.errors import StepError
from tasks.storage import connections

CONN_ID_ENV = "TUNERFLOW_MLFLOW_CONN_ID"
DEFAULT_CONN_ID = "tunerflow_mlflow"
HTTP_SCHEMES = ("http", "https")
CREDENTIAL_VARS = ("MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD", "MLFLOW_TRACKING_TOKEN")
INSECURE_VAR = "MLFLOW_TRACKING_INSECURE_TLS"


class TrackingError(StepError):
    """The MLflow connection cannot be used as it is (no host, bad extra): fix the connection."""


class MlflowTarget(BaseModel):
    """The tracking server and how to reach it, read from an Airflow connection."""

    model_config = ConfigDict(frozen=True)

    conn_id: str = Field(description="The Airflow connection this came from (named in messages).")
    tracking_uri: str = Field(description="MLflow's tracking URI: http(s)://host:port, or a local store.")
    registry_uri: str | None = Field(None, description="extra.registry_uri: the Model Registry, if separate.")
    experiment_name: str | None = Field(
        None, description="extra.experiment_name: the MLflow experiment; default the tunerflow experiment."
    )
    username: SecretStr | None = Field(None, description="The login: MLFLOW_TRACKING_USERNAME.")
    password: SecretStr | None = Field(
        None, description="The password (MLFLOW_TRACKING_PASSWORD), or a token when there is no login."
    )
    insecure_tls: bool = Field(False, description="extra.insecure_tls: skip TLS certificate verification.")

    @property
    def shown_uri(self) -> str:
        """The tracking URI for messages: never a user:password part."""
        return shown(self.tracking_uri)


def conn_id(environ: Mapping[str, str] | None = None) -> str:
    """The MLflow connection's id: TUNERFLOW_MLFLOW_CONN_ID, else `tunerflow_mlflow`."""
    return (os.environ if environ is None else environ).get(CONN_ID_ENV) or DEFAULT_CONN_ID


def airflow_target(conn: str | None = None) -> MlflowTarget | None:
    """The target from the Airflow connection (any secrets backend); None when it is not defined.
    Call it inside an Airflow task."""
    conn = conn or conn_id()
    value = connections.airflow_connection(conn)
    return None if value is None else target(conn, value)


def target(conn: str, value: str) -> MlflowTarget:
    """The target from a connection in Airflow's JSON or URI form."""
    try:
        fields = connections.parse_connection(conn, value, uri_example="http://user:password@host:5000")
    except connections.ConnectionInvalid as error:
        raise TrackingError(str(error)) from None
    extra = fields["extra"]
    login, password = fields.get("login") or None, fields.get("password") or None
    return MlflowTarget(
        conn_id=conn,
        tracking_uri=tracking_uri(conn, fields),
        registry_uri=extra.get("registry_uri") or None,
        experiment_name=extra.get("experiment_name") or None,
        username=login,
        password=password,
        insecure_tls=str(extra.get("insecure_tls", "")).lower() in ("1", "true", "yes"),
    )


def tracking_uri(conn: str, fields: Mapping[str, Any]) -> str:
    """The host as a URI: taken as it is when it has a scheme, else completed with protocol and port."""
    host = (fields.get("host") or "").strip()
    if not host:
        raise TrackingError(
            f"Airflow connection '{conn}' has no host: set it to the tracking server, e.g. "
            f"`airflow connections add {conn} --conn-type http --conn-host http://mlflow.internal:5000`"
        )
    if "://" in host:
        return host.rstrip("/")
    schema, conn_type = fields.get("schema") or "", fields.get("conn_type") or ""
    scheme = schema if schema in HTTP_SCHEMES else conn_type if conn_type in HTTP_SCHEMES else "https"
    port = f":{fields['port']}" if fields.get("port") else ""
    return f"{scheme}://{host}{port}"


def credentials_vars(target: MlflowTarget) -> dict[str, str]:
    """The MLFLOW_TRACKING_* variables MLflow's client authenticates with."""
    env: dict[str, str] = {}
    password = target.password.get_secret_value() if target.password else None
    if target.username is not None:
        env["MLFLOW_TRACKING_USERNAME"] = target.username.get_secret_value()
        if password:
            env["MLFLOW_TRACKING_PASSWORD"] = password
    elif password:
        env["MLFLOW_TRACKING_TOKEN"] = password
    if target.insecure_tls:
        env[INSECURE_VAR] = "true"
    return env


@contextmanager
def environment(values: Mapping[str, str], clear: tuple[str, ...] = ()) -> Iterator[None]:
    """The block runs with `values` set and the other names in `clear` unset in os.environ (MLflow's
    client reads its settings there only); every name's earlier value is restored after it."""
    names = (*clear, *values)
    saved = {name: os.environ.get(name) for name in names}
    for name in clear:
        os.environ.pop(name, None)
    os.environ.update(values)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def credentials_env(target: MlflowTarget) -> contextlib.AbstractContextManager[None]:
    """The block runs with the target's credentials in MLflow's variables (and none left over from the
    worker's environment); the variables are restored after it."""
    return environment(credentials_vars(target), clear=(*CREDENTIAL_VARS, INSECURE_VAR))


def shown(uri: str) -> str:
    """`uri` without any user:password@ part, for messages."""
    parts = urlsplit(uri)
    if "@" not in parts.netloc:
        return uri  # nothing to hide; also keeps `sqlite:///path` as it is
    return urlunsplit(parts._replace(netloc=parts.netloc.rsplit("@", 1)[-1]))
