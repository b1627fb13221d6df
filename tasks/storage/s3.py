"""The one place a boto3 S3 client is made: a custom endpoint for MinIO, credentials from the Airflow
connection `aws_default` where the step has it, else boto3's own chain (AWS_* variables, a profile, a pod's
IAM role).

Credentials resolution, in order:

1. `AIRFLOW_CONN_AWS_DEFAULT` (the connection id can be changed with `TUNERFLOW_S3_CONN_ID`), in
   Airflow's JSON or URI form: login = access key id, password = secret access key, `extra.endpoint_url`
   (or the connection's host) = the endpoint (MinIO), `extra.region_name` = the region. On the local
   backend the Airflow task resolves the connection from any secrets backend and passes it to the step
   subprocess's environment only (`store_env`); on Kubernetes a Secret in `env_from_secrets` sets it.
2. Otherwise boto3's default chain, unchanged: `AWS_ENDPOINT_URL`, `AWS_ACCESS_KEY_ID` /
   `AWS_SECRET_ACCESS_KEY`, `AWS_PROFILE`, an instance or pod role.

The secret is never logged, returned or written; error messages name the connection, not its values.

Retries (`retry_settings`): an endpoint that stops answering (a MinIO restart, a network partition) is
ridden out by bounded retries. Every request has a connect timeout (`TUNERFLOW_S3_CONNECT_TIMEOUT_S`,
default 5) and a read timeout (`TUNERFLOW_S3_READ_TIMEOUT_S`, default 12: the longest silence tolerated
while waiting for bytes, not a limit on a whole transfer), and is tried at most
`TUNERFLOW_S3_MAX_ATTEMPTS` times (default 6) in botocore's "standard" mode, which waits a random
0..min(2^i, 20) s before try i+1. Against an endpoint that accepts connections but never answers, that is
about 6 x 12 s + up to 31 s of backoff, 72 to 103 s before the request fails; a 30 s outage is over by
the third or fourth try. An endpoint that refuses connections fails each try at once, so only the
backoff (15 s on average, at most 31 s) is waited: raise the attempts for longer restarts.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
import threading
from typing import Any
from urllib.parse import urlparse

from tasks.storage import connections, masking
from tasks.storage.uris import is_s3, split_bucket

CONN_ID_ENV = "TUNERFLOW_S3_CONN_ID"
split = split_bucket
DEFAULT_CONN_ID = "aws_default"
AWS_CREDENTIALS = ("AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN")
# (environment variable, default, smallest accepted value) of the retry policy; see the module docstring.
RETRY_SETTINGS = {
    "max_attempts": ("TUNERFLOW_S3_MAX_ATTEMPTS", 6, 1),
    "connect_timeout": ("TUNERFLOW_S3_CONNECT_TIMEOUT_S", 5.0, 0.1),
    "read_timeout": ("TUNERFLOW_S3_READ_TIMEOUT_S", 12.0, 0.1),
}


def retry_settings(environ: Any = None) -> dict[str, float | int]:
    """{"max_attempts", "connect_timeout", "read_timeout"} from the environment (defaults above); a value
    that is not a number, or is below its minimum, raises ValueError naming the variable."""
    environ = os.environ if environ is None else environ
    settings: dict[str, float | int] = {}
    for key, (variable, default, smallest) in RETRY_SETTINGS.items():
        raw = (environ.get(variable) or "").strip()
        kind = type(default)
        try:
            value = kind(raw) if raw else default
        except ValueError:
            value = None
        if value is None or value < smallest:
            raise ValueError(
                f"{variable}={raw!r}: expected {'an integer' if kind is int else 'a number of seconds'} "
                f">= {smallest}; unset it for the default {default}"
            )
        settings[key] = value
    return settings


def conn_id() -> str:
    return os.environ.get(CONN_ID_ENV) or DEFAULT_CONN_ID


def client_kwargs(environ: Any = None) -> dict[str, Any]:
    """boto3 client arguments from the Airflow connection in the environment; {} when it is not there
    (boto3's default chain then applies)."""
    name = conn_id()
    fields = connections.read(name, environ)
    if fields is None and environ is None:
        fields = _in_task_connection(name)
    if fields is None:
        # boto3's default chain reads the keys from AWS_* variables: mask them in this task's log.
        masking.mask_environment(names=AWS_CREDENTIALS)
        return {}
    extra = fields["extra"]
    kwargs: dict[str, Any] = {}
    if fields.get("login"):
        kwargs["aws_access_key_id"] = fields["login"]
    if fields.get("password"):
        kwargs["aws_secret_access_key"] = fields["password"]
    if extra.get("aws_session_token"):
        kwargs["aws_session_token"] = extra["aws_session_token"]
    endpoint = extra.get("endpoint_url") or _host_endpoint(fields)
    if endpoint:
        kwargs["endpoint_url"] = str(endpoint)
    if extra.get("region_name"):
        kwargs["region_name"] = str(extra["region_name"])
    if bool(kwargs.get("aws_access_key_id")) != bool(kwargs.get("aws_secret_access_key")):
        raise connections.ConnectionInvalid(
            f"Airflow connection '{name}' ({connections.env_var(name)}): set both login (the access key id) "
            "and password (the secret access key), or neither to use boto3's default credentials"
        )
    return kwargs


def _in_task_connection(name: str) -> dict[str, Any] | None:
    """The connection as Airflow resolves it, for the light tasks that use the store inside the Airflow
    task process (where a connection kept in the metadata database or a secrets backend is not in the
    environment). Only tried where Airflow's task runner is already loaded: a step subprocess or a pod
    never imports Airflow for this."""
    if "airflow.sdk.execution_time.task_runner" not in sys.modules:
        return None
    try:
        value = connections.airflow_connection(name)
    except Exception:  # outside a running task there is no connection to ask for: boto3's chain applies
        return None
    return connections.parse_connection(name, value) if value else None


def _host_endpoint(fields: dict[str, Any]) -> str | None:
    host = (fields.get("host") or "").strip()
    if not host:
        return None
    if "://" not in host:
        # The URI form puts the endpoint's protocol in the connection type only when it is http(s).
        scheme = fields.get("conn_type") if fields.get("conn_type") in ("http", "https") else "http"
        host = f"{scheme}://{host}"
    if fields.get("port") and urlparse(host).port is None:
        host = f"{host}:{fields['port']}"
    return host


# Only digests are kept as keys, so no secret sits in a structure that a log or a repr could show.
_CLIENTS: dict[tuple[int, str], Any] = {}
_CLIENTS_LOCK = threading.Lock()
MAX_CLIENTS = 8


def client() -> Any:
    """A boto3 S3 client for the credentials, endpoint and region in effect now, made once and then reused
    (making one costs a few tenths of a second, and a page makes many calls).

    Clients are cached by a digest of everything that picks the credentials: the connection's fields
    and every `AWS_*` variable (boto3's own chain reads those), so a rotated connection or Secret gets a new
    client on the next call. boto3's shared default session is never used: it keeps the credentials it
    first found. Clients are thread-safe and shared across threads; sessions are not, so each is made
    under a lock. The process id is part of the key: a forked worker must not reuse its parent's
    connection pool."""
    kwargs = client_kwargs()
    key = (os.getpid(), _credentials_digest(kwargs))
    found = _CLIENTS.get(key)
    if found is not None:
        return found
    with _CLIENTS_LOCK:
        found = _CLIENTS.get(key)
        if found is None:
            found = new_client(kwargs)
            while len(_CLIENTS) >= MAX_CLIENTS:
                # Rotated-away credentials are never asked for again: drop the oldest.
                _CLIENTS.pop(next(iter(_CLIENTS)))
            _CLIENTS[key] = found
        return found


def _credentials_digest(kwargs: dict[str, Any]) -> str:
    chain = {name: value for name, value in os.environ.items() if name.startswith("AWS_")}
    # The retry policy is fixed when a client is made: a changed setting needs a client of its own.
    material = json.dumps(
        {"connection": kwargs, "environment": chain, "retries": retry_settings()}, sort_keys=True
    )
    return hashlib.sha256(material.encode()).hexdigest()


def new_client(kwargs: dict[str, Any] | None = None) -> Any:
    """A client of its own, never cached or shared, from `kwargs` (default: `client_kwargs()`): for a
    caller that registers event handlers on it, which would otherwise stay on every later caller's client."""
    import boto3
    from botocore.config import Config

    kwargs = client_kwargs() if kwargs is None else kwargs
    # A custom endpoint (MinIO, moto) serves buckets under its path, not as subdomains; AWS itself
    # keeps boto3's own choice.
    custom = kwargs.get("endpoint_url") or os.environ.get("AWS_ENDPOINT_URL")
    retry = retry_settings()
    config = Config(
        s3={"addressing_style": "path" if custom else "auto"},
        connect_timeout=retry["connect_timeout"],
        read_timeout=retry["read_timeout"],
        retries={"total_max_attempts": int(retry["max_attempts"]), "mode": "standard"},
    )
    return boto3.session.Session().client("s3", config=config, **kwargs)


def store_env(root: str) -> dict[str, str]:
    """{AIRFLOW_CONN_AWS_DEFAULT: <the connection as JSON>} for a heavy step's environment when the store
    root is s3:// and Airflow knows the connection; {} otherwise (boto3's default chain may still have
    credentials, e.g. AWS_* variables or an IAM role). Call it inside an Airflow task; put the value in
    the subprocess's environment only, never in a log, XCom or a file."""
    if not is_s3(root):
        return {}
    name = conn_id()
    value = connections.airflow_connection(name)
    return {connections.env_var(name): value} if value else {}


# Error codes, as botocore reports them (S3 sends a bare status code for HEAD requests).
MISSING_CODES = ("NoSuchKey", "404", "NotFound")
# A conditional write that lost: 412 when the precondition no longer holds, 409 when another conditional
# write to the same key was in flight (S3 says: retry). Both mean "someone else wrote it; re-read".
LOST_RACE_CODES = ("PreconditionFailed", "ConditionalRequestConflict", "412", "409")


def error_code(error: Exception) -> str:
    """The S3 error code of a botocore ClientError, else its HTTP status; '' for other errors."""
    response = getattr(error, "response", None) or {}
    code = (response.get("Error") or {}).get("Code")
    return str(code or (response.get("ResponseMetadata") or {}).get("HTTPStatusCode") or "")


def is_missing(error: Exception) -> bool:
    return error_code(error) in MISSING_CODES


def lost_race(error: Exception) -> bool:
    return error_code(error) in LOST_RACE_CODES


def is_unavailable(error: Exception) -> bool:
    """An endpoint that did not answer (no ClientError at all: a timeout or a refused connection) or said
    it could not now (5xx, SlowDown): what a later try may get past."""
    from botocore import exceptions  # with boto3: never loaded where no S3 request is made

    response = getattr(error, "response", None)
    if response is None:  # missing credentials or a bad parameter are no endpoint's fault
        return isinstance(error, exceptions.ConnectionError | exceptions.HTTPClientError)
    status = (response.get("ResponseMetadata") or {}).get("HTTPStatusCode") or 0
    return int(status) >= 500 or error_code(error) in ("SlowDown", "RequestTimeout", "ServiceUnavailable")


def is_missing_bucket(error: Exception) -> bool:
    return error_code(error) == "NoSuchBucket"


def endpoint_of(client: Any) -> str:
    """The endpoint a client talks to, without any user info a URL could carry."""
    url = urlparse(str(getattr(getattr(client, "meta", None), "endpoint_url", "") or ""))
    return f"{url.scheme}://{url.hostname}{f':{url.port}' if url.port else ''}" if url.hostname else "?"


def describe(error: Exception, bucket: str) -> str:
    """A readable cause built from the error code and message only, so no credential value is echoed."""
    from botocore.exceptions import ClientError, NoCredentialsError

    if isinstance(error, NoCredentialsError):
        return "no credentials found; set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (or an AWS profile)"
    if not isinstance(error, ClientError):
        return f"{type(error).__name__}: {error}"
    code = error_code(error) or "unknown"
    message = str(error.response.get("Error", {}).get("Message", ""))
    if code == "NoSuchBucket":
        return f"no such bucket '{bucket}'"
    if code in MISSING_CODES:
        return "no such key"
    if code in ("AccessDenied", "403", "Forbidden"):
        return "access denied; check the credentials and the bucket policy"
    if code in ("InvalidAccessKeyId", "SignatureDoesNotMatch"):
        return f"the credentials were rejected ({code})"
    return f"{code}: {message}" if message else code
