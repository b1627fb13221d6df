from __future__ import annotations

import json
import subprocess
import sys

import pytest
from pydantic import Field

from tasks.contracts.base import Contract
from tasks.contracts.prepare import PrepareSpec
from tasks.runtime.errors import StepError
from tasks.runtime.step import execute
from tasks.storage import store


class DemoSpec(Contract):
    """A step's spec reduced to what the protocol reads."""

    output: str = Field(description="Prefix the step writes and commits.")


def test_execute_commits_a_manifest_last_and_skips_committed_output(tmp_path):
    prefix = (tmp_path / "out").as_uri()
    calls = []

    def body(job):
        calls.append(1)
        (store.local_path(job.output) / "weights.bin").write_bytes(b"abc")
        return {"ok": True}

    assert execute("demo", body, DemoSpec(output=prefix)) == {"ok": True}
    manifest = store.read_json(store.join(prefix, "manifest.json"))
    assert manifest["files"]["weights.bin"]["sha256"] == store.sha256_file(tmp_path / "out" / "weights.bin")
    assert execute("demo", body, DemoSpec(output=prefix)) == {"ok": True}
    assert len(calls) == 1


def test_a_failed_step_leaves_error_json_and_no_manifest_and_a_retry_starts_clean(tmp_path):
    prefix = (tmp_path / "out").as_uri()

    def broken(job):
        (store.local_path(job.output) / "half.bin").write_bytes(b"x")
        raise StepError("the reason")

    with pytest.raises(StepError):
        execute("demo", broken, DemoSpec(output=prefix))
    assert not store.is_committed(prefix)
    assert store.read_json(store.join(prefix, "error.json"))["message"] == "the reason"

    result = execute("demo", lambda job: {"ok": 1}, DemoSpec(output=prefix))
    assert result == {"ok": 1}
    assert not (tmp_path / "out" / "half.bin").exists() and not (tmp_path / "out" / "error.json").exists()


def test_cli_prints_one_json_line_and_exits_non_zero_with_a_reason(tmp_path):
    root = tmp_path.as_uri()
    job = PrepareSpec(store_root=root, dataset={"name": "tuna", "uri": "builtin:tuna_identity"})
    ok = subprocess.run(
        [sys.executable, "-m", "tasks.prepare_dataset", "--job", job.model_dump_json()],
        capture_output=True,
        text=True,
    )
    assert ok.returncode == 0, ok.stderr
    assert json.loads(ok.stdout.strip().splitlines()[-1])["name"] == "tuna"
    job.dataset.uri = "builtin:missing"
    bad = subprocess.run(
        [sys.executable, "-m", "tasks.prepare_dataset", "--job", job.model_dump_json()],
        capture_output=True,
        text=True,
    )
    assert bad.returncode == 1 and "no builtin dataset of that name" in bad.stderr


def test_a_spec_without_an_output_is_refused_before_anything_runs(tmp_path):
    """A prepare spec names its output only once `complete_job` has read its inputs."""
    spec = PrepareSpec(store_root=tmp_path.as_uri(), dataset={"name": "tuna", "uri": "builtin:tuna_identity"})
    with pytest.raises(StepError, match="prepare_dataset: the spec names no output to write"):
        execute("prepare_dataset", lambda job: {"ok": 1}, spec)
    assert list(tmp_path.iterdir()) == []
