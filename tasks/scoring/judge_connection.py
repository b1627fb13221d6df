"""The LLM judge's endpoint: an Airflow connection, carried to the step in its environment.

The endpoint is an Airflow connection (`scoring.judge.conn_id`, default `tunerflow_judge`): host (or
`extra.base_url`) is the base URL, password the API key, `extra.model` the default model, `extra.headers`
extra HTTP headers. It travels the way Airflow itself reads connections from the environment:

- on the Airflow worker, `connection_env()` resolves it with Airflow's API (any secrets backend) and
  returns `{"AIRFLOW_CONN_<CONN_ID>": <the connection as JSON>}` for the step subprocess's environment only;
- in a Kubernetes pod, a Secret listed in `env_from_secrets` sets the same variable;
- in the step, `read_connection()` parses that variable (JSON or URI form) without importing Airflow,
  which the trainer image does not have.

The key is never logged, never in XCom, a job spec or a result: it exists only in that environment
variable and in the Authorization header (`tasks.scoring.judge_client`), and is scrubbed from every error
message.

Stdlib and pydantic only: the Airflow worker imports this module.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError

from tasks.runtime.errors import StepError
from tasks.storage import connections
from tasks.storage.connections import env_var

URI_EXAMPLE = "http://:<api key>@host:port/v1?model=<model>"
HTTP_SCHEMES = ("http", "https")


class JudgeError(StepError):
    """The judge cannot be used (no connection, key refused, wrong URL or model, too many rows ungraded)."""


class JudgeEndpoint(BaseModel):
    """Where and how to call the judge, read from an Airflow connection."""

    model_config = ConfigDict(frozen=True)

    conn_id: str = Field(description="The Airflow connection this came from (named in error messages).")
    base_url: str = Field(description="The API root that /chat/completions is appended to.")
    api_key: SecretStr | None = Field(
        None, description="The connection's password, sent as a bearer token; none for keyless servers."
    )
    model: str | None = Field(None, description="The connection's extra.model: the default judge model.")
    headers: dict[str, str] = Field(
        default_factory=dict, repr=False, description="The connection's extra.headers, sent with every call."
    )

    @property
    def chat_url(self) -> str:
        """Where chat completions are posted."""
        return f"{self.base_url.rstrip('/')}/chat/completions"

    def request_headers(self) -> dict[str, str]:
        """Every call's headers: the connection's own, JSON, and the API key as a bearer token. The key
        leaves the SecretStr only here, for the request."""
        headers = {**self.headers, "Content-Type": "application/json"}
        if self.api_key is not None:
            headers["Authorization"] = f"Bearer {self.api_key.get_secret_value()}"
        return headers

    def scrub(self, text: str) -> str:
        """`text` without the API key (an error body may echo what it was sent)."""
        key = self.api_key.get_secret_value() if self.api_key else ""
        return text.replace(key, "***") if key else text


def how_to_create(conn_id: str) -> str:
    example = {
        "conn_type": "http",
        "host": "https://api.openai.com/v1",
        "password": "<api key>",
        "extra": {"model": "gpt-4o-mini"},
    }
    return (
        f"create it with `airflow connections add {conn_id} --conn-type http --conn-host "
        'https://api.openai.com/v1 --conn-password <api key> --conn-extra \'{"model": "gpt-4o-mini"}\'`, '
        f"or set {env_var(conn_id)}='{json.dumps(example)}' on the Airflow workers"
    )


def connection_env(conn_id: str) -> dict[str, str]:
    """{AIRFLOW_CONN_<CONN_ID>: the connection as Airflow's JSON} for a step subprocess's environment.

    Call it inside an Airflow task: Airflow resolves the connection from whichever secrets backend the
    deployment uses (the metadata database, environment variables, Vault, ...) and masks its password in
    the task log. Put the result in the subprocess's environment only: never log it, return it from a
    task (XCom) or write it into a job spec."""
    value = connections.airflow_connection(conn_id)
    if value is None:
        raise JudgeError(
            f"scoring.judge.conn_id: the Airflow connection '{conn_id}' that the llm_judge metric calls is "
            f"not defined; {how_to_create(conn_id)}"
        )
    endpoint(conn_id, value)  # refuse an unusable connection here, before a GPU step starts
    return {env_var(conn_id): value}


def read_connection(conn_id: str, environ: Mapping[str, str] | None = None) -> JudgeEndpoint:
    """The judge endpoint from AIRFLOW_CONN_<CONN_ID> (JSON or URI form), without importing Airflow."""
    name = env_var(conn_id)
    value = (os.environ if environ is None else environ).get(name)
    if not value:
        raise JudgeError(
            f"the llm_judge metric needs the Airflow connection '{conn_id}' (scoring.judge.conn_id), but "
            f"{name} is not set in this step's environment. With the local backend the evaluate task passes "
            f"it from Airflow: {how_to_create(conn_id)}. With the kubernetes backend, put {name} in a Secret "
            "and list the Secret in env_from_secrets (include/configs/kubernetes.yaml)"
        )
    return endpoint(conn_id, value)


@contextmanager
def _as_judge_error() -> Iterator[None]:
    """A connection the shared parser refuses, refused as a JudgeError (what the metric reports)."""
    try:
        yield
    except connections.ConnectionInvalid as error:
        raise JudgeError(str(error)) from None


def endpoint(conn_id: str, value: str) -> JudgeEndpoint:
    """The endpoint from a connection in one of Airflow's environment-variable forms."""
    fields = parse_connection(conn_id, value)
    extra = fields["extra"]
    headers = extra.get("headers") or {}
    if isinstance(headers, str):  # the URI form carries every extra as a string
        with _as_judge_error():
            headers = connections.json_object(conn_id, "extra.headers", headers)
    model = extra.get("model")
    try:
        return JudgeEndpoint(
            conn_id=conn_id,
            base_url=base_url(conn_id, fields),
            api_key=fields["password"] or None,
            model=model or None,
            headers=headers,
        )
    except ValidationError as error:
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in error.errors())
        raise JudgeError(f"Airflow connection '{conn_id}': extra.{problems}") from None


def parse_connection(conn_id: str, value: str) -> dict[str, Any]:
    """The connection's fields (see `tasks.storage.connections.parse_connection`), refused as a JudgeError."""
    with _as_judge_error():
        return connections.parse_connection(conn_id, value, uri_example=URI_EXAMPLE)


def base_url(conn_id: str, fields: Mapping[str, Any]) -> str:
    """The API root: extra.base_url, else the host (a URL, or a name completed by scheme, port and path).

    An http connection's schema is its protocol (Airflow's HTTP hook); otherwise it is the URL path, which
    is where the path of the URI form (`http://:key@localhost:8000/v1`) lands, and the URI's scheme (the
    connection type) is the protocol. A bare name with neither defaults to https."""
    explicit = fields["extra"].get("base_url")
    if explicit:
        return str(explicit).rstrip("/")
    host = (fields.get("host") or "").strip()
    if not host:
        raise JudgeError(
            f"Airflow connection '{conn_id}' has no host: set it to the judge's API root, e.g. "
            "https://api.openai.com/v1 or http://vllm.internal:8000/v1 (or set extra.base_url)"
        )
    schema = fields.get("schema") or ""
    if "://" not in host:
        conn_type = fields.get("conn_type") or ""
        scheme = schema if schema in HTTP_SCHEMES else conn_type if conn_type in HTTP_SCHEMES else "https"
        host = f"{scheme}://{host}"
    parts = urlsplit(host)
    netloc = parts.netloc
    if fields.get("port") and parts.port is None:
        netloc = f"{netloc}:{fields['port']}"
    path = parts.path.rstrip("/")
    if not path and schema and schema not in HTTP_SCHEMES:
        path = "/" + schema.strip("/")
    return urlunsplit((parts.scheme, netloc, path, parts.query, ""))


def shown(url: str) -> str:
    """`url` without any user:password@ part, for messages."""
    parts = urlsplit(url)
    return urlunsplit(parts._replace(netloc=parts.netloc.rsplit("@", 1)[-1]))
