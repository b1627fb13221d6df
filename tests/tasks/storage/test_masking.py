"""Every credential tunerflow reads inside an Airflow task is told to Airflow's secrets masker where it is
read, so a task log line that would hold it (as it is or URL-encoded) shows *** instead."""

from __future__ import annotations

import json
import sys
from urllib.parse import quote, quote_plus

import pytest

from tasks.storage import connections, masking, s3

# Distinct per test, so one test's masking cannot make another's pass; '/' and '+' make the URL-encoded
# forms differ from the value.
PASSWORD = "conn-pass/word+9f3a"
SESSION_TOKEN = "session/token+77c1e0"
HEADER_KEY = "hdr-key-51d0a8e2"
BEARER = "bearer-tok-2b9e4410"


@pytest.fixture
def in_task(monkeypatch):
    """This process as an Airflow task's: its runner loaded, as in a worker or dag.test."""
    import airflow.sdk.execution_time.task_runner  # noqa: F401  (what masking.in_task looks for)

    assert masking.in_task()


def _shown(text: str) -> str:
    """`text` as Airflow's masker writes it to a task log."""
    from airflow.sdk._shared.secrets_masker import redact

    return redact(text)


def _connection(password: str, **extra) -> str:
    return json.dumps({"conn_type": "aws", "login": "AKIAMASKTEST", "password": password, "extra": extra})


def test_a_connection_read_from_its_variable_is_masked_with_the_secrets_in_its_extra(in_task, monkeypatch):
    extra = {
        "region_name": "us-east-1",
        "aws_session_token": SESSION_TOKEN,
        "headers": {"X-Api-Key": HEADER_KEY, "Authorization": f"Bearer {BEARER}", "Accept": "text/plain"},
    }
    monkeypatch.setenv("AIRFLOW_CONN_MASK_ME", _connection(PASSWORD, **extra))
    assert connections.read("mask_me")["password"] == PASSWORD
    for secret in (PASSWORD, SESSION_TOKEN, HEADER_KEY, BEARER):
        for form in (secret, quote(secret, safe=""), quote_plus(secret)):
            assert _shown(f"line {form} end") == "line *** end", form
    # Settings that are not credentials stay readable.
    assert _shown("region us-east-1 accepts text/plain") == "region us-east-1 accepts text/plain"


def test_a_connection_resolved_by_airflow_has_the_secrets_in_its_extra_masked(in_task, monkeypatch):
    token = "airflow-resolved/session+0d4c"
    monkeypatch.setenv(
        "AIRFLOW_CONN_MASK_RESOLVED", _connection("resolved-pass-8e1b", aws_session_token=token)
    )
    assert connections.airflow_connection("mask_resolved")
    # Airflow masks the extra as one string only; the token alone must be masked too.
    assert _shown(f"token {token}") == "token ***"
    assert _shown(f"token {quote(token, safe='')}") == "token ***"


def test_the_aws_keys_of_botos_default_chain_are_masked_when_the_store_uses_them(in_task, monkeypatch):
    monkeypatch.delenv("AIRFLOW_CONN_AWS_DEFAULT", raising=False)
    monkeypatch.delenv(s3.CONN_ID_ENV, raising=False)
    monkeypatch.setattr(s3, "_in_task_connection", lambda name: None)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "env-secret/key+4a7d")
    monkeypatch.setenv("AWS_SESSION_TOKEN", "env-session-token-93bf")
    assert s3.client_kwargs() == {}
    assert _shown("env-secret/key+4a7d env-secret%2Fkey%2B4a7d") == "*** ***"
    assert _shown("env-session-token-93bf") == "***"


def test_a_local_step_task_masks_the_credentials_its_subprocess_inherits(in_task, monkeypatch, tmp_path):
    from tasks.backends import heavy
    from tasks.pipeline.plan import step_argv
    from tasks.storage import store

    monkeypatch.setenv("TUNERFLOW_STORE", tmp_path.as_uri())
    monkeypatch.setenv("HF_TOKEN", "hf_inherited/Token+c0ffee")
    monkeypatch.setattr(heavy, "run_step", lambda argv, env: {"ok": True})
    argv = step_argv("prepare_dataset", store.join(tmp_path.as_uri(), "datasets", "tuna.json"))
    assert heavy.run_locally("prepare_dataset", argv, {}, None) == {"ok": True}
    assert _shown("hf_inherited/Token+c0ffee | hf_inherited%2FToken%2Bc0ffee") == "*** | ***"


def test_outside_an_airflow_task_nothing_is_masked_and_airflow_is_not_imported(monkeypatch):
    monkeypatch.delitem(sys.modules, masking.TASK_RUNNER, raising=False)
    monkeypatch.setenv("AIRFLOW_CONN_MASK_STEP", _connection("step-side-pass-6a2c"))
    assert connections.read("mask_step")["password"] == "step-side-pass-6a2c"
    assert _shown("step-side-pass-6a2c") == "step-side-pass-6a2c"


def test_values_too_short_or_blank_are_left_to_airflows_own_rule(in_task):
    masking.mask("   ")
    masking.mask(None)
    assert _shown("plain words stay") == "plain words stay"
