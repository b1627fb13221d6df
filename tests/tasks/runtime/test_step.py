from __future__ import annotations

import errno
import json
import subprocess
import sys
import threading
import time

import pytest
from pydantic import Field

from tasks.contracts.base import Contract
from tasks.contracts.prepare import PrepareSpec
from tasks.runtime.errors import StepError
from tasks.runtime.step import execute, failure
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
    # The failure is also one `{"error": ...}` line: what the local backend reads where no error.json
    # could be written (a full or unreachable store).
    said = json.loads(bad.stdout.strip().splitlines()[-1])["error"]
    assert said["step"] == "prepare_dataset" and "no builtin dataset of that name" in said["message"]


def test_a_write_that_met_a_full_disk_is_reported_as_no_space():
    full = OSError(errno.ENOSPC, "No space left on device")
    assert failure("train", full) == {"step": "train", "type": "NoSpace", "message": str(full)}
    assert failure("train", ValueError("bad"))["type"] == "ValueError"


def test_a_spec_without_an_output_is_refused_before_anything_runs(tmp_path):
    """A prepare spec names its output only once `complete_job` has read its inputs."""
    spec = PrepareSpec(store_root=tmp_path.as_uri(), dataset={"name": "tuna", "uri": "builtin:tuna_identity"})
    with pytest.raises(StepError, match="prepare_dataset: the spec names no output to write"):
        execute("prepare_dataset", lambda job: {"ok": 1}, spec)
    assert list(tmp_path.iterdir()) == []


def test_a_shared_output_wanted_by_two_processes_at_once_is_built_once(tmp_path):
    # Two experiments on the same data name the same prepared version: the second must wait for the
    # first's manifest, not reset the prefix under it and build it again.
    prefix = (tmp_path / "datasets" / "tuna" / "v1").as_uri()
    inside = threading.Event()
    calls, results, errors = [], [], []

    def body(job):
        calls.append(1)
        inside.set()
        (store.local_path(job.output) / "train.jsonl").write_text('{"text": "a"}\n')
        time.sleep(1.0)  # still writing when the other process asks for the same output
        return {"version": "v1"}

    def run():
        try:
            results.append(execute("prepare_dataset", body, DemoSpec(output=prefix), shared=True))
        except Exception as error:  # pragma: no cover - reported below
            errors.append(error)

    first = threading.Thread(target=run)
    first.start()
    assert inside.wait(30)
    second = threading.Thread(target=run)
    second.start()
    first.join(60)
    second.join(60)

    assert errors == []
    assert len(calls) == 1
    assert results == [{"version": "v1"}, {"version": "v1"}]
    assert store.verify_local(prefix) == []
    assert not (tmp_path / "datasets" / "tuna" / "v1.claim.json").exists()


def test_a_failed_shared_build_leaves_error_json_and_releases_its_claim(tmp_path):
    prefix = (tmp_path / "out").as_uri()

    def broken(job):
        raise StepError("the reason")

    with pytest.raises(StepError):
        execute("demo", broken, DemoSpec(output=prefix), shared=True)
    assert not store.is_committed(prefix)
    assert store.read_json(store.join(prefix, "error.json"))["message"] == "the reason"
    assert not (tmp_path / "out.claim.json").exists()
    assert execute("demo", lambda job: {"ok": 1}, DemoSpec(output=prefix), shared=True) == {"ok": 1}
