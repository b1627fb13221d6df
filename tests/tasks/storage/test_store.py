"""The artifact store on file:// and on S3 (moto's server over HTTP): every public function, the commit
protocol (manifest last), sha256 verification on fetch, multipart uploads and an upload that fails halfway."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

from tasks.storage import mirror, s3, store


@pytest.fixture(params=["file", "s3"])
def root(request, tmp_path, monkeypatch) -> str:
    if request.param == "file":
        monkeypatch.setenv("TUNERFLOW_CACHE_DIR", str(tmp_path / "cache"))
        return (tmp_path / "store").as_uri()
    return request.getfixturevalue("s3_store_root")


def _write_output(root: str, name: str = "job") -> str:
    prefix = store.join(root, name)
    directory = store.local_dir(prefix)
    (directory / "weights.bin").write_bytes(os.urandom(1000))
    (directory / "sub").mkdir(exist_ok=True)
    (directory / "sub" / "notes.txt").write_text("hello")
    return prefix


def test_json_files_exist_list_and_remove(root):
    uri = store.join(root, "run", "experiment.json")
    assert not store.exists(uri) and store.modified_at(uri) is None
    store.write_json(uri, {"name": "x", "n": 1})
    assert store.read_json(uri) == {"name": "x", "n": 1}
    assert store.exists(uri) and store.exists(store.join(root, "run"))
    assert not store.exists(store.join(root, "ru")), "a prefix is not matched by a shorter sibling"
    assert store.modified_at(uri).endswith("+00:00")
    assert store.modified_at(store.join(root, "run")) is not None
    store.write_json(store.join(root, "run", "jobs", "a", "train.json"), {})
    store.write_json(store.join(root, "runs-other.json"), {})
    assert store.list_dir(store.join(root, "run")) == ["experiment.json", "jobs"]
    assert store.list_dir(store.join(root, "nothing")) == []
    with pytest.raises(FileNotFoundError):
        store.read_json(store.join(root, "run", "missing.json"))
    assert store.remove(store.join(root, "run"))
    assert not store.exists(uri) and store.list_dir(store.join(root, "run")) == []
    assert store.exists(store.join(root, "runs-other.json")), "remove(prefix) keeps a sibling"
    assert store.remove(store.join(root, "runs-other.json"))
    assert not store.remove(store.join(root, "runs-other.json"))


def test_create_json_refuses_an_existing_key(root):
    uri = store.join(root, "registry", "0001.json")
    store.create_json(uri, {"claimed_by": "a"})
    with pytest.raises(FileExistsError):
        store.create_json(uri, {"claimed_by": "b"})
    assert store.read_json(uri) == {"claimed_by": "a"}


def test_commit_then_fetch_round_trip_verifies_every_file(root, tmp_path, monkeypatch):
    prefix = _write_output(root)
    assert not store.is_committed(prefix) and store.committed_result(prefix) is None
    manifest = store.commit(prefix, {"ok": True}, skip=["sub/notes.txt"])
    assert sorted(manifest["files"]) == ["weights.bin"]
    assert store.is_committed(prefix) and store.committed_result(prefix) == {"ok": True}
    assert store.verify(prefix) == []
    expected = (store.local_dir(prefix) / "weights.bin").read_bytes()
    # A fresh machine: nothing in the local mirror.
    monkeypatch.setenv("TUNERFLOW_CACHE_DIR", str(tmp_path / "fresh-cache"))
    local = store.fetch(prefix)
    assert (local / "weights.bin").read_bytes() == expected
    assert store.fetch(store.join(prefix, "weights.bin")).read_bytes() == expected
    assert store.uri_of(local) == (prefix if store.is_s3(prefix) else store.to_uri(local))
    assert store.fetch_file(store.join(prefix, "weights.bin")).read_bytes() == expected


def test_reset_drops_an_uncommitted_output_and_keeps_a_committed_one(root):
    prefix = _write_output(root, "half")
    if store.is_s3(prefix):
        store.write_json(store.join(prefix, "error.json"), {"message": "boom"})
    store.reset(prefix)
    assert not store.exists(prefix) and not (store.local_dir(prefix) / "weights.bin").exists()
    done = _write_output(root, "done")
    store.commit(done, {})
    store.reset(done)
    assert store.is_committed(done) and store.verify(done) == []


def test_local_path_names_the_way_to_read_an_s3_uri():
    assert store.local_path("file:///tmp/x") == Path("/tmp/x")
    assert store.local_path("/tmp/x") == Path("/tmp/x")
    with pytest.raises(ValueError, match=r"'s3://bucket/key' is not a local path: use store.fetch\(\)"):
        store.local_path("s3://bucket/key")


def test_a_file_uri_s_path_is_percent_decoded_as_path_as_uri_encodes_it(tmp_path):
    folder = tmp_path / "my store %"
    assert store.local_path(folder.as_uri()) == folder
    assert store.local_path_or_none(folder.as_uri()) == folder
    assert store.local_path_or_none("relative/a b.jsonl") == Path("relative/a b.jsonl")
    assert store.local_path_or_none("s3://bucket/key") is None
    assert store.local_path_or_none("https://example.com/rows.jsonl") is None  # no backend: not local


def test_fetch_refuses_an_uncommitted_prefix(s3_store_root):
    prefix = _write_output(s3_store_root)
    with pytest.raises(store.StoreError, match=rf"'{prefix}' is not committed"):
        store.fetch(prefix)
    store.commit(prefix, {})
    with pytest.raises(store.StoreError, match="is not among the files committed"):
        store.fetch(store.join(prefix, "no-such-file"))


def test_a_tampered_object_fails_fetch_naming_the_file(s3_store_root, tmp_path, monkeypatch):
    prefix = _write_output(s3_store_root)
    store.commit(prefix, {})
    bucket, key = s3.split(prefix)
    s3.client().put_object(Bucket=bucket, Key=f"{key}/weights.bin", Body=b"not the committed bytes")
    assert store.verify(prefix) == ["weights.bin"]
    monkeypatch.setenv("TUNERFLOW_CACHE_DIR", str(tmp_path / "fresh-cache"))
    with pytest.raises(store.StoreError, match=rf"'weights.bin' under '{prefix}' does not match its sha256"):
        store.fetch(prefix)
    assert not (store.mirror(prefix) / "weights.bin").exists(), "the bad copy is not left behind"
    assert not list(store.mirror(prefix).glob(".*.part"))


def test_a_local_copy_with_the_right_sha256_is_not_downloaded_again(s3_store_root, monkeypatch):
    prefix = _write_output(s3_store_root)
    store.commit(prefix, {})
    calls = []

    def counting():
        client = s3.new_client()
        client.meta.events.register("before-send.s3.GetObject", lambda **kw: calls.append(1))
        return client

    monkeypatch.setattr(s3, "client", counting)
    store.fetch(prefix)  # the mirror is what commit uploaded
    assert calls == [1], "only the manifest is read"
    (store.mirror(prefix) / "weights.bin").write_bytes(b"corrupted locally")
    store.fetch(prefix)
    assert len(calls) == 3, "the manifest and the one bad file"
    assert (
        store.sha256_file(store.mirror(prefix) / "weights.bin")
        == store.read_json(store.join(prefix, store.MANIFEST))["files"]["weights.bin"]["sha256"]
    )


def test_a_big_file_goes_multipart_with_sha256_checksums(s3_store_root, monkeypatch):
    monkeypatch.setenv(store.PART_MB_ENV, "5")
    prefix = store.join(s3_store_root, "big")
    payload = os.urandom(12 * 1024 * 1024)
    (store.local_dir(prefix) / "model.safetensors").write_bytes(payload)
    parts = []
    real = s3.client

    def recording():
        client = s3.new_client()
        # The header S3 checks each part's bytes against.
        client.meta.events.register(
            "before-send.s3.UploadPart",
            lambda request, **kw: parts.append("x-amz-checksum-sha256" in request.headers),
        )
        return client

    monkeypatch.setattr(s3, "client", recording)
    store.commit(prefix, {})
    assert parts == [True] * 3, "12 MiB in 5 MiB parts, each with its SHA-256"
    bucket, key = s3.split(prefix)
    head = real().head_object(Bucket=bucket, Key=f"{key}/model.safetensors", ChecksumMode="ENABLED")
    assert head["ETag"].strip('"').endswith("-3") and head.get("ChecksumSHA256")
    shutil.rmtree(store.mirror(prefix))
    assert (store.fetch(prefix) / "model.safetensors").read_bytes() == payload


def test_an_upload_that_fails_halfway_commits_nothing_and_a_retry_completes(s3_store_root, monkeypatch):
    monkeypatch.setenv(store.PART_MB_ENV, "5")
    prefix = store.join(s3_store_root, "jobs", "a", "train")
    directory = store.local_dir(prefix)
    payload = os.urandom(12 * 1024 * 1024)
    (directory / "model.safetensors").write_bytes(payload)
    (directory / "config.json").write_text(json.dumps({"layers": 2}))
    real = s3.client
    sent = []

    def failing():
        client = s3.new_client()

        def cut(**kwargs):
            sent.append(1)
            if len(sent) > 1:
                raise ConnectionError("network cut after the first part")

        client.meta.events.register("before-send.s3.UploadPart", cut)
        return client

    monkeypatch.setattr(s3, "client", failing)
    with pytest.raises(Exception, match="network cut"):
        store.commit(prefix, {"ok": True})
    monkeypatch.setattr(s3, "client", real)
    assert not store.is_committed(prefix) and store.committed_result(prefix) is None
    bucket, _ = s3.split(prefix)
    client = real()
    assert "manifest.json" not in store.list_dir(prefix)
    assert "model.safetensors" not in store.list_dir(prefix), "no partial object is visible"
    assert not client.list_multipart_uploads(Bucket=bucket).get("Uploads"), "the multipart upload was aborted"
    with pytest.raises(store.StoreError, match="is not committed"):
        store.fetch(prefix)
    # The retry: the step protocol resets the uncommitted output, then writes and commits again.
    store.reset(prefix)
    assert not store.exists(prefix)
    directory = store.local_dir(prefix)
    (directory / "model.safetensors").write_bytes(payload)
    (directory / "config.json").write_text(json.dumps({"layers": 2}))
    store.commit(prefix, {"ok": True})
    assert store.committed_result(prefix) == {"ok": True}
    shutil.rmtree(store.mirror(prefix))
    assert (store.fetch(prefix) / "model.safetensors").read_bytes() == payload
    assert store.verify(prefix) == []


def test_build_once_builds_a_shared_output_once_for_concurrent_callers(root):
    """Several jobs needing the same converted base model at once: one builds, the rest wait for it."""
    import threading
    import time

    prefix = store.join(root, "base_models", "m")
    built = []

    def build(directory: Path) -> dict:
        built.append(threading.get_ident())
        time.sleep(0.5)  # long enough for every other caller to find the claim taken
        (directory / "model.safetensors").write_bytes(b"weights")
        return {"model": "m"}

    results = []
    threads = [
        threading.Thread(target=lambda: results.append(store.build_once(prefix, build, poll_s=0.05)))
        for _ in range(4)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(built) == 1 and results == [{"model": "m"}] * 4
    assert (store.fetch(prefix) / "model.safetensors").read_bytes() == b"weights"
    assert not store.exists(prefix + ".claim.json"), "the claim is released after the commit"


def test_a_claim_whose_process_is_gone_is_taken_over_at_once(root):
    import socket
    import subprocess
    import sys

    gone = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True
    )
    prefix = store.join(root, "base_models", "m")
    store.create_json(
        prefix + ".claim.json", {"host": socket.gethostname(), "pid": int(gone.stdout), "at": 0}
    )
    result = store.build_once(prefix, lambda directory: {"built": True}, poll_s=0.05)
    assert result == {"built": True} and not store.exists(prefix + ".claim.json")


def test_another_machine_s_live_claim_is_waited_for_until_it_commits(root):
    import threading
    import time

    prefix = store.join(root, "base_models", "m")
    store.create_json(prefix + ".claim.json", {"host": "other-machine", "pid": 1, "at": time.time()})

    def other_machine_finishes() -> None:
        time.sleep(0.5)
        (store.local_dir(prefix) / "model.safetensors").write_bytes(b"theirs")
        store.commit(prefix, {"by": "other-machine"})
        store.remove(prefix + ".claim.json")

    finisher = threading.Thread(target=other_machine_finishes)
    finisher.start()
    result = store.build_once(
        prefix, lambda directory: pytest.fail("built despite a live claim"), poll_s=0.05
    )
    finisher.join()
    assert result == {"by": "other-machine"}
    # ...but a claim older than stale_after_s (a machine that died mid-build) is taken over.
    stale = store.join(root, "base_models", "n")
    store.create_json(stale + ".claim.json", {"host": "other-machine", "pid": 1, "at": time.time() - 7200})
    assert store.build_once(stale, lambda directory: {"built": True}, poll_s=0.05) == {"built": True}


def test_a_fetched_file_is_hashed_once_per_process_until_it_changes(s3_store_root, monkeypatch):
    """A step fetches its base model for the tokenizer and again for the weights: the second fetch must
    not hash gigabytes again, yet a local rewrite of the same size is still caught."""
    prefix = _write_output(s3_store_root)
    store.commit(prefix, {})
    hashed = []
    real = mirror.sha256_file
    monkeypatch.setattr(mirror, "sha256_file", lambda path, *a: hashed.append(path.name) or real(path, *a))
    store.fetch(prefix)
    first = sorted(hashed)
    store.fetch(prefix)
    assert sorted(hashed) == first, "nothing hashed again while size and mtime hold"
    target = store.mirror(prefix) / "weights.bin"
    target.write_bytes(os.urandom(target.stat().st_size))  # same size, new content, new mtime
    store.fetch(prefix)
    assert (
        store.sha256_file(target)
        == store.read_json(store.join(prefix, store.MANIFEST))["files"]["weights.bin"]["sha256"]
    )


def test_publish_file_makes_a_report_readable_without_committing(root):
    prefix = store.join(root, "datasets", "refused")
    (store.local_dir(prefix) / "validation_report.json").write_text('{"rows": 0}')
    store.publish_file(store.join(prefix, "validation_report.json"))
    assert store.read_json(store.join(prefix, "validation_report.json")) == {"rows": 0}
    assert not store.is_committed(prefix)


def test_verify_local_names_a_local_file_that_no_longer_matches(root):
    prefix = _write_output(root)
    store.commit(prefix, {})
    assert store.verify_local(prefix) == []
    (store.local_dir(prefix) / "weights.bin").write_bytes(b"x" * 1000)
    # file:// reports the change; a remote store repairs its mirror from the committed objects.
    assert store.verify_local(prefix) == ([] if store.is_s3(prefix) else ["weights.bin"])


def test_schemes_are_asked_of_the_store():
    assert store.is_local("/tmp/x") and store.is_local("file:///tmp/x") and store.is_local("a:b.jsonl")
    assert not store.is_local("s3://bucket/key")
    with pytest.raises(store.UnsupportedScheme, match="'gs://'"):
        store.backend_for("gs://bucket/key")


def test_an_uncommitted_object_s_copy_is_reused_until_it_or_the_object_changes(s3_store_root, tmp_path):
    """The dataset-source cache: the copy's sha256 is recorded at download, with the object's ETag."""
    bucket, key = s3.split(store.join(s3_store_root, "raw", "rows.jsonl"))
    client = s3.client()
    client.put_object(Bucket=bucket, Key=key, Body=b'{"a": 1}\n')
    uri = f"s3://{bucket}/{key}"
    cache = tmp_path / "sources"
    [(name, path)] = store.local_copies(uri, cache)
    assert name == "rows.jsonl" and path == store.mirror(uri, cache) and path.read_bytes() == b'{"a": 1}\n'
    stamp = path.stat().st_mtime_ns
    assert store.local_copies(uri, cache)[0][1].stat().st_mtime_ns == stamp, "current: not downloaded"
    path.write_bytes(b'{"a": 2}\n')  # changed locally (same size): its sha256 no longer matches
    assert store.local_copies(uri, cache)[0][1].read_bytes() == b'{"a": 1}\n'
    client.put_object(Bucket=bucket, Key=key, Body=b'{"a": 3}\n')  # a new version of the object
    assert store.local_copies(uri, cache)[0][1].read_bytes() == b'{"a": 3}\n'
