"""Telling Airflow's secrets masker about every credential tunerflow reads, at the place it reads it.

Airflow masks a connection's password and its whole `extra` string when a task asks Airflow for the
connection, and nothing else. tunerflow reads more than that inside Airflow tasks: a connection straight
from its `AIRFLOW_CONN_<ID>` variable (the light tasks' store client), the secrets inside a connection's
extra (an S3 session token, an API key header), the `AWS_*` keys boto3's default chain reads, and the
Hugging Face token a step subprocess inherits from the worker. Each of those places calls `mask()`,
`mask_connection()` or `mask_environment()`, so a task log line that would show the value shows `***`.

Each value is masked as it is and URL-encoded (a connection's URI form carries its password quoted, and
a quoted value is what a URL in an error message shows). Airflow's masker skips values shorter than its
`min_length_masked_secret` (5 by default): such a value cannot be told apart from ordinary text.

Outside an Airflow task process (a step subprocess, a pod, the CLI) there is no task log to mask and
Airflow may not be installed (the trainer image): the calls then do nothing and import nothing.
Stdlib only at import.
"""

from __future__ import annotations

import hashlib
import os
import sys
from collections.abc import Iterable, Mapping
from typing import Any
from urllib.parse import quote, quote_plus

# Credentials read from the environment: by boto3's default chain (the store without a connection) and by
# huggingface_hub in every step (gated models), which inherits the worker's environment.
ENV_CREDENTIALS = (
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "AWS_SECURITY_TOKEN",
    "HF_TOKEN",
    "HUGGING_FACE_HUB_TOKEN",
)
# Keys of a connection's extra (and of its extra.headers) whose values are credentials.
SENSITIVE_WORDS = ("password", "passwd", "secret", "token", "key", "authorization", "credential", "cookie")
TASK_RUNNER = "airflow.sdk.execution_time.task_runner"

# Digests of the values already handed to the masker: each call is a message to the task's supervisor,
# and the store client asks on every use. Digests, so no secret sits in a structure a repr could show;
# with the process id, so a forked process (another task, another supervisor) tells its own again.
_masked: set[tuple[int, str]] = set()


def in_task() -> bool:
    """Whether this process is an Airflow task's (its runner is loaded: a log to mask exists)."""
    return TASK_RUNNER in sys.modules


def variants(value: str) -> list[str]:
    """`value` and its URL-encoded forms (path-safe, fully quoted, form-encoded), each once."""
    forms = [value, quote(value), quote(value, safe=""), quote_plus(value)]
    return list(dict.fromkeys(forms))


def mask(value: Any) -> None:
    """Tell Airflow's masker about `value` (and its URL-encoded forms) when this is an Airflow task."""
    if not isinstance(value, str) or not value.strip() or not in_task():
        return
    from airflow.sdk.log import mask_secret  # Airflow is loaded in a task process; steps never get here

    for form in variants(value):
        key = (os.getpid(), hashlib.sha256(form.encode()).hexdigest())
        if key not in _masked:
            mask_secret(form)
            _masked.add(key)


def sensitive(key: str) -> bool:
    """Whether a connection extra's key (or a header's name) holds a credential."""
    normalized = key.strip().lower().replace("-", "_")
    return any(word in normalized for word in SENSITIVE_WORDS)


def mask_connection(fields: Mapping[str, Any]) -> None:
    """Mask a parsed connection's secrets (`tasks.storage.connections.parse_connection`): its password,
    and every extra value (at any depth, headers included) under a key that names a credential."""
    mask(fields.get("password"))
    _mask_extra(fields.get("extra") or {}, sensitive_parent=False)


def _mask_extra(value: Any, sensitive_parent: bool, key: str = "") -> None:
    if isinstance(value, Mapping):
        for name, item in value.items():
            _mask_extra(item, sensitive_parent or sensitive(str(name)), str(name))
    elif isinstance(value, list | tuple):
        for item in value:
            _mask_extra(item, sensitive_parent, key)
    elif isinstance(value, str) and sensitive_parent:
        mask(value)
        # `Authorization: Bearer <token>`: the token alone appears wherever the header is not shown whole.
        scheme, _, token = value.partition(" ")
        if token and scheme.lower() in ("bearer", "basic", "token"):
            mask(token)


def mask_environment(
    environ: Mapping[str, str] | None = None, names: Iterable[str] = ENV_CREDENTIALS
) -> None:
    """Mask the credentials among `names` that the environment holds (default: this process's)."""
    environ = os.environ if environ is None else environ
    for name in names:
        mask(environ.get(name))
