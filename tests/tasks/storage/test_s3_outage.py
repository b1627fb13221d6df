"""An S3 endpoint that stops answering during a checkpoint upload and during a commit's manifest write,
for longer than the store's retries last. (That a 30 s outage is ridden out is checked on a whole run,
tests/dags/test_s3_outage_run.py.)

The endpoint is a real moto server in its own process, frozen with SIGSTOP (it still accepts connections,
the kernel buffers what the client sends, and nothing answers) and resumed with SIGCONT, so its in-memory
objects survive the outage. The freeze is started by a controller thread the moment the store sends the
request under test, so the request always meets a stopped endpoint.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tasks.storage import s3, store
from tasks.storage.errors import StoreUnavailable
from tests.fixtures.connections import aws_environment_for
from tests.fixtures.network import free_port

CHECKPOINT_MB = 6  # above the 5 MiB part size set below: a multipart upload of two parts


@pytest.fixture
def moto_process(monkeypatch, tmp_path) -> Iterator[tuple[subprocess.Popen, str]]:
    """A moto S3 server process of this test's own, with the AWS environment and a bucket as store root."""
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    endpoint = f"http://127.0.0.1:{port}"
    try:
        for _ in range(200):
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                time.sleep(0.05)
        aws_environment_for(monkeypatch, endpoint)
        monkeypatch.setenv("TUNERFLOW_CACHE_DIR", str(tmp_path / "cache"))
        monkeypatch.setenv("TUNERFLOW_S3_PART_MB", "5")
        s3.new_client().create_bucket(Bucket="faults")
        yield process, endpoint
    finally:
        os.kill(process.pid, signal.SIGCONT)  # a stopped process would not act on the termination
        process.terminate()
        process.wait(timeout=30)


class Outage:
    """Freezes the endpoint process when the client sends the first request matching `operation` (and
    `key_suffix`), until `resume()`, from a controller thread."""

    def __init__(self, process: subprocess.Popen, operation: str, key_suffix: str):
        self.process, self.operation, self.key_suffix = process, operation, key_suffix
        self.requested, self.stopped, self.done = threading.Event(), threading.Event(), threading.Event()
        self.stopped_at = self.resumed_at = 0.0
        self.client = s3.client()
        self.event = f"before-send.s3.{operation}"
        self.thread = threading.Thread(target=self._control, name="outage", daemon=True)

    def _hook(self, request, **_: object) -> None:
        if self.requested.is_set() or not request.url.split("?")[0].endswith(self.key_suffix):
            return
        self.requested.set()
        self.stopped.wait(10)  # the request under test is sent only once the endpoint is frozen

    def _control(self) -> None:
        self.requested.wait()
        os.kill(self.process.pid, signal.SIGSTOP)
        self.stopped_at = time.monotonic()
        self.stopped.set()

    def resume(self) -> None:
        if not self.resumed_at:
            os.kill(self.process.pid, signal.SIGCONT)
            self.resumed_at = time.monotonic()

    def __enter__(self) -> Outage:
        self.client.meta.events.register(self.event, self._hook)
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.client.meta.events.unregister(self.event, self._hook)
        self.requested.set()
        self.resume()
        self.thread.join(5)


def _checkpoint(root: str, name: str) -> tuple[str, Path]:
    prefix = store.join(root, name)
    directory = store.local_dir(prefix)
    weights = directory / "checkpoint" / "model.safetensors"
    weights.parent.mkdir(parents=True, exist_ok=True)
    weights.write_bytes(os.urandom(CHECKPOINT_MB * 1024 * 1024))
    (directory / "checkpoint" / "trainer_state.json").write_text('{"step": 10}')
    return prefix, weights


def _visible_state_is_whole(prefix: str) -> None:
    """What a reader sees: no manifest, or a manifest whose every file is stored with its sha256."""
    if store.is_committed(prefix):
        assert store.verify(prefix) == [], "a manifest is visible while a file it lists is not stored"


@pytest.mark.parametrize(
    ("operation", "key_suffix"),
    [("UploadPart", "model.safetensors"), ("PutObject", "manifest.json")],
    ids=["checkpoint-upload", "manifest-write"],
)
def test_an_outage_longer_than_the_retries_fails_naming_object_and_endpoint(
    moto_process, monkeypatch, operation, key_suffix
):
    """With a short policy the commit gives up while the endpoint is still frozen: StoreUnavailable (a
    StoreError the local backend retries) naming the object and the endpoint, nothing partial visible
    once it answers again, and a retry completes."""
    process, endpoint = moto_process
    monkeypatch.setenv("TUNERFLOW_S3_MAX_ATTEMPTS", "2")
    monkeypatch.setenv("TUNERFLOW_S3_READ_TIMEOUT_S", "1")
    prefix, _ = _checkpoint("s3://faults/tunerflow", f"fail-{operation}")
    with Outage(process, operation, key_suffix) as outage, pytest.raises(StoreUnavailable) as failed:
        store.commit(prefix, {"step": 10})
    message = str(failed.value)
    assert f"{prefix}/checkpoint/model.safetensors" in message or f"{prefix}/manifest.json" in message
    assert key_suffix in message and endpoint in message and "after 2 attempts" in message
    assert "testing" not in message  # the credentials never

    outage.resume()
    # A request the client gave up on is still in the endpoint's socket buffer and may land now; whatever
    # lands, a reader never sees a manifest without all its files.
    time.sleep(1)
    _visible_state_is_whole(prefix)
    if operation == "UploadPart":
        assert not store.is_committed(prefix), "an upload failed, yet a manifest was written"

    # The retried step: reset (drops an uncommitted try's objects and mirror; a no-op once committed),
    # write the checkpoint again, commit.
    store.reset(prefix)
    if not store.is_committed(prefix):
        _checkpoint("s3://faults/tunerflow", f"fail-{operation}")
    store.commit(prefix, {"step": 10})
    assert store.is_committed(prefix) and store.verify(prefix) == []


def test_the_retry_policy_is_read_from_the_environment(monkeypatch):
    monkeypatch.setenv("TUNERFLOW_S3_MAX_ATTEMPTS", "9")
    monkeypatch.setenv("TUNERFLOW_S3_READ_TIMEOUT_S", "2.5")
    monkeypatch.delenv("TUNERFLOW_S3_CONNECT_TIMEOUT_S", raising=False)
    assert s3.retry_settings() == {"max_attempts": 9, "connect_timeout": 5.0, "read_timeout": 2.5}
    monkeypatch.setenv("TUNERFLOW_S3_MAX_ATTEMPTS", "0")
    with pytest.raises(ValueError, match="TUNERFLOW_S3_MAX_ATTEMPTS='0'"):
        s3.retry_settings()
