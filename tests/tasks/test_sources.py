from __future__ import annotations

import json
import socket

import pytest

from tasks.data import RowError
from tasks.sources import SourceError, open_source


def _ids_and_values(source, target_bytes=64 << 20):
    out = []
    for shard in source.shards(target_bytes):
        for row_id, record in shard.records():
            out.append((row_id, record.code if isinstance(record, RowError) else record))
    return out


def test_jsonl_shards_concatenate_to_the_whole_file_with_line_numbers(tmp_path):
    path = tmp_path / "rows.jsonl"
    lines = [json.dumps({"text": f"row {i} " + "x" * (i % 37)}).encode() for i in range(500)]
    lines[10] = b""  # blank: skipped, but still counted as a line
    lines[20] = b'{"text": "\xff"}'
    lines[30] = b"{broken"
    path.write_bytes(b"\n".join(lines) + b"\n")
    source = open_source(str(path), cache_dir=tmp_path / "cache")
    whole = _ids_and_values(source)
    sharded = _ids_and_values(source, target_bytes=700)
    assert len(source.shards(700)) > 10
    assert sharded == whole
    ids = dict(whole)
    assert (
        "rows.jsonl:11" not in ids
        and ids["rows.jsonl:21"] == "not_utf8"
        and ids["rows.jsonl:31"] == "unparseable"
    )
    assert ids["rows.jsonl:500"] == {"text": "row 499 " + "x" * (499 % 37)}


def test_parquet_shards_follow_row_groups(tmp_path):
    pa = pytest.importorskip("pyarrow")
    pq = pytest.importorskip("pyarrow.parquet")
    path = tmp_path / "rows.parquet"
    pq.write_table(pa.Table.from_pylist([{"text": f"r{i}"} for i in range(2500)]), path, row_group_size=300)
    source = open_source(str(path), cache_dir=tmp_path)
    assert len(source.shards(1)) == 9
    assert _ids_and_values(source, 1) == _ids_and_values(source)
    assert _ids_and_values(source)[-1] == ("rows.parquet:2500", {"text": "r2499"})


def test_globs_label_rows_by_path_below_the_pattern_and_fingerprint_follows_bytes(tmp_path):
    for part in ("a", "b/c"):
        (tmp_path / part).mkdir(parents=True)
        (tmp_path / part / "rows.jsonl").write_text('{"text": "x"}\n')
    source = open_source(str(tmp_path / "**" / "*.jsonl"), cache_dir=tmp_path)
    assert source.labels == ["a/rows.jsonl", "b/c/rows.jsonl"]
    again = open_source(str(tmp_path / "**" / "*.jsonl"), cache_dir=tmp_path)
    assert again.fingerprint == source.fingerprint
    (tmp_path / "a" / "rows.jsonl").write_text('{"text": "y"}\n')
    assert open_source(str(tmp_path / "**" / "*.jsonl"), cache_dir=tmp_path).fingerprint != source.fingerprint


def test_missing_files_and_empty_globs_and_unknown_builtins_are_named(tmp_path):
    with pytest.raises(SourceError, match="no such file"):
        open_source(str(tmp_path / "nope.jsonl"), cache_dir=tmp_path)
    with pytest.raises(SourceError, match="matches no file"):
        open_source(str(tmp_path / "*.parquet"), cache_dir=tmp_path)
    with pytest.raises(SourceError, match="known: tuna_identity"):
        open_source("builtin:nope", cache_dir=tmp_path)
    assert open_source("builtin:tuna_identity", cache_dir=tmp_path).labels == ["tuna_identity.jsonl"]


# ------------------------------------------------------------------------------------------------ S3


@pytest.fixture(scope="module")
def s3_endpoint():
    from moto.server import ThreadedMotoServer

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port)
    server.start()
    yield f"http://127.0.0.1:{port}"
    server.stop()


@pytest.fixture
def s3(s3_endpoint, monkeypatch):
    import boto3

    monkeypatch.setenv("AWS_ENDPOINT_URL", s3_endpoint)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    client = boto3.client("s3")
    client.create_bucket(Bucket="data")
    for name in ("train/part-0.jsonl", "train/part-1.jsonl", "other/x.jsonl"):
        client.put_object(Bucket="data", Key=name, Body=json.dumps({"text": name}).encode() + b"\n")
    return client


def test_s3_objects_and_globs_download_once_over_http(s3, tmp_path, monkeypatch):
    cache = tmp_path / "cache"
    source = open_source("s3://data/train/*.jsonl", cache_dir=cache)
    assert source.labels == ["part-0.jsonl", "part-1.jsonl"]
    assert [v for _, v in _ids_and_values(source)] == [
        {"text": "train/part-0.jsonl"},
        {"text": "train/part-1.jsonl"},
    ]
    downloads = []
    import tasks.sources as sources

    real = sources._download

    def counting(client, bucket, key, etag, cache_dir):
        path = real(client, bucket, key, etag, cache_dir)
        downloads.append(path.stat().st_mtime_ns)
        return path

    monkeypatch.setattr(sources, "_download", counting)
    mtime = (cache / "s3" / "data" / "train" / "part-0.jsonl").stat().st_mtime_ns
    again = open_source("s3://data/train/*.jsonl", cache_dir=cache)
    assert again.fingerprint == source.fingerprint and downloads[0] == mtime, (
        "cached by ETag, not downloaded again"
    )
    s3.put_object(Bucket="data", Key="train/part-0.jsonl", Body=b'{"text": "changed"}\n')
    assert open_source("s3://data/train/*.jsonl", cache_dir=cache).fingerprint != source.fingerprint
    single = open_source("s3://data/other/x.jsonl", cache_dir=cache)
    assert single.labels == ["x.jsonl"]


def test_s3_missing_key_bucket_and_pattern_say_so(s3, tmp_path):
    with pytest.raises(SourceError, match="does not exist"):
        open_source("s3://data/train/nope.jsonl", cache_dir=tmp_path)
    with pytest.raises(SourceError, match="does not exist"):
        open_source("s3://no-such-bucket/*.jsonl", cache_dir=tmp_path)
    with pytest.raises(SourceError, match="no object matches"):
        open_source("s3://data/train/*.parquet", cache_dir=tmp_path)


# ------------------------------------------------------------------------------------------- Hugging Face


@pytest.fixture
def hf_home(tmp_path, monkeypatch):
    import datasets

    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", tmp_path / "hf" / "datasets")
    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", True)
    return tmp_path


def test_hf_save_to_disk_directories_and_local_data_dirs_load_by_split(hf_home):
    import datasets

    saved = hf_home / "saved"
    datasets.DatasetDict(
        {
            "train": datasets.Dataset.from_list([{"text": f"t{i}"} for i in range(5)]),
            "test": datasets.Dataset.from_list([{"text": "only test"}]),
        }
    ).save_to_disk(str(saved))
    source = open_source(f"hf:{saved}@test", cache_dir=hf_home / "cache")
    assert _ids_and_values(source) == [("saved@test:1", {"text": "only test"})]
    with pytest.raises(SourceError, match="no split 'validation'"):
        open_source(f"hf:{saved}@validation", cache_dir=hf_home / "cache")
    files = hf_home / "files"
    files.mkdir()
    (files / "train.jsonl").write_text('{"text": "a"}\n{"text": "b"}\n')
    assert len(_ids_and_values(open_source(f"hf:{files}", cache_dir=hf_home / "cache"))) == 2


def test_hf_hub_names_fail_clearly_without_a_hub(hf_home):
    with pytest.raises(SourceError, match=r"could not load from the Hugging Face Hub.*save_to_disk"):
        open_source("hf:some-org/some-dataset", cache_dir=hf_home / "cache")
