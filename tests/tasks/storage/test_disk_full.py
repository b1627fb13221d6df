"""The file store's disk full during a commit: a 2 MiB tmpfs mounted as the store root (skipped where
mounting is not permitted). A commit that does not fit fails naming the path, the bytes to write and the
bytes free, leaves no manifest and no temporary file, and completes once space is freed."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tasks.storage import file_backend, store
from tasks.storage.errors import NoSpace


@pytest.fixture
def small_disk(tmp_path) -> Iterator[Path]:
    mount_point = tmp_path / "store"
    mount_point.mkdir()
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(mount_point)],
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        pytest.skip(f"cannot mount a 2 MiB tmpfs here (needs root): {done.stderr.strip() or done.returncode}")
    try:
        yield mount_point
    finally:
        subprocess.run(["umount", "-l", str(mount_point)], check=False)


def _output(root: Path) -> str:
    """A step's output written into the store (file://: the prefix is where the step writes)."""
    prefix = store.join(root.as_uri(), "run", "job")
    directory = store.local_dir(prefix)
    (directory / "adapter.bin").write_bytes(os.urandom(256 * 1024))
    (directory / "metrics.json").write_text('{"loss": 1.0}')
    return prefix


def _fill(disk: Path) -> Path:
    """Take every free block of the disk with one file, as another writer would."""
    filler = disk / "filler.bin"
    with filler.open("wb", buffering=0) as handle:  # unbuffered: nothing left to flush on close
        for size in (65536, 4096, 1):
            try:
                while True:
                    handle.write(b"\0" * size)
            except OSError:
                pass
    return filler


def _leftovers(disk: Path) -> list[str]:
    return sorted(p.name for p in disk.rglob("*") if p.name.endswith(".tmp") or p.name == store.MANIFEST)


def test_a_commit_that_does_not_fit_is_refused_before_writing(small_disk):
    prefix = _output(small_disk)
    filler = _fill(small_disk)
    with pytest.raises(NoSpace) as refused:
        store.commit(prefix, {"loss": 1.0})
    message = str(refused.value)
    assert str(store.local_path(store.join(prefix, store.MANIFEST))) in message
    assert "bytes to write, 0 bytes free" in message and "retry" in message
    assert not store.is_committed(prefix) and _leftovers(small_disk) == []

    filler.unlink()  # space freed: the retried commit completes
    store.commit(prefix, {"loss": 1.0})
    assert store.is_committed(prefix) and store.verify(prefix) == []


def test_a_disk_that_fills_during_the_write_leaves_no_temporary_file(small_disk, monkeypatch):
    """The free space looked sufficient (another writer took it meanwhile): the write meets ENOSPC."""
    prefix = _output(small_disk)
    filler = _fill(small_disk)
    real = file_backend.shutil.disk_usage
    monkeypatch.setattr(
        file_backend.shutil, "disk_usage", lambda path: real(path)._replace(free=10 * 1024 * 1024)
    )
    with pytest.raises(NoSpace, match=r"no space to write .*manifest\.json: \d+ bytes to write"):
        store.commit(prefix, {"loss": 1.0})
    assert not store.is_committed(prefix) and _leftovers(small_disk) == []

    filler.unlink()
    store.commit(prefix, {"loss": 1.0})
    assert store.is_committed(prefix) and store.verify(prefix) == []


def test_files_larger_than_the_free_space_are_not_copied_at_all(small_disk, tmp_path):
    """Sizes known up front: 3 MiB of files for a 2 MiB disk are refused before the first one is copied."""
    outside = tmp_path / "outside"
    outside.mkdir()
    files = {}
    for name in ("a.bin", "b.bin", "c.bin"):
        (outside / name).write_bytes(os.urandom(1024 * 1024))
        files[name] = outside / name
    prefix = store.join(small_disk.as_uri(), "published")
    with pytest.raises(NoSpace, match=r"3145728 bytes to write, \d+ bytes free"):
        store.backend_for(prefix).upload_files(prefix, files)
    assert not (small_disk / "published").exists() or list((small_disk / "published").iterdir()) == []
    del files["c.bin"], files["b.bin"]
    store.backend_for(prefix).upload_files(prefix, files)
    assert (small_disk / "published" / "a.bin").stat().st_size == 1024 * 1024


def test_a_step_on_a_full_disk_fails_retryably_saying_so_and_its_retry_completes(small_disk, tmp_path):
    """A whole step (prepare_dataset, through the local backend as an Airflow task runs it) whose store
    is full: the task's failure says the disk is full and is retried, nothing is committed, and once space
    is freed the retry prepares the dataset."""
    from tasks.backends.local import StepFailed, run_step
    from tasks.pipeline.plan import step_argv

    spec_uri = store.to_uri(tmp_path / "spec.json")  # the spec itself lies outside the full disk
    store.write_json(
        spec_uri,
        {"store_root": small_disk.as_uri(), "dataset": {"name": "t", "uri": "builtin:tuna_identity"}},
    )
    filler = _fill(small_disk)
    with pytest.raises(StepFailed) as failed:
        run_step(step_argv("prepare_dataset", spec_uri))
    assert failed.value.retryable, failed.value
    assert "No space left on device" in str(failed.value) or "bytes free" in str(failed.value)
    assert list(small_disk.rglob(store.MANIFEST)) == []

    filler.unlink()
    result = run_step(step_argv("prepare_dataset", spec_uri))
    assert result["counts"]["train"] > 0
    assert store.is_committed(result["uri"]) and store.verify(result["uri"]) == []
