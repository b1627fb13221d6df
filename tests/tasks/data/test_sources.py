"""tasks.data.sources: dataset URIs to shards of raw rows (local files, globs, builtin, S3 via moto, hf:)."""

from __future__ import annotations

import json
import pickle
import urllib.request
from pathlib import Path

import pytest

from tasks.data import hub_source, shards, sources
from tasks.data.rows import RowError
from tasks.data.sources import Shard, Source, SourceError, open_source
from tasks.storage import s3_backend
from tasks.storage.s3 import client as s3_client
from tests.fixtures.network import free_port


def _rows(source: Source, target_bytes: int = 64 << 20) -> list[tuple[str, object]]:
    """Every (id, row or error code) of a source, read shard after shard."""
    out = []
    for shard in source.shards(target_bytes):
        shard = pickle.loads(pickle.dumps(shard))  # as a worker process receives it
        for row_id, record in shard.records():
            out.append((row_id, record.code if isinstance(record, RowError) else record))
    return out


def _whole(path: Path, label: str) -> list[tuple[str, object]]:
    shard = Shard(label, sources.file_kind(path), str(path))
    return [(i, r.code if isinstance(r, RowError) else r) for i, r in shard.records()]


# --------------------------------------------------------------------------------------- local kinds


def test_jsonl_ids_are_line_numbers_with_blank_lines_counted_and_bad_lines_as_row_errors(tmp_path):
    path = tmp_path / "rows.jsonl"
    path.write_bytes(b'{"a": 1}\n\n   \n{broken\n{"a": "\xff"}\n{"a": 6}')  # no final newline
    source = open_source(str(path), cache_dir=tmp_path / "cache")
    assert source.files == [path] and source.labels == ["rows.jsonl"]
    assert _rows(source) == [
        ("rows.jsonl:1", {"a": 1}),
        ("rows.jsonl:4", "unparseable"),
        ("rows.jsonl:5", "not_utf8"),
        ("rows.jsonl:6", {"a": 6}),
    ]


def test_unknown_suffixes_and_ndjson_read_as_jsonl_and_file_uris_work(tmp_path):
    (tmp_path / "a.ndjson").write_text('{"x": 1}\n')
    (tmp_path / "b.txt").write_text('{"x": 2}\n')
    assert _rows(open_source(str(tmp_path / "a.ndjson"), cache_dir=tmp_path)) == [("a.ndjson:1", {"x": 1})]
    uri = (tmp_path / "b.txt").as_uri()
    assert _rows(open_source(uri, cache_dir=tmp_path)) == [("b.txt:1", {"x": 2})]


def test_json_lists_have_zero_based_ids_and_other_json_is_a_source_error(tmp_path):
    (tmp_path / "list.json").write_text(json.dumps([{"a": 1}, {"a": 2}]))
    assert _rows(open_source(str(tmp_path / "list.json"), cache_dir=tmp_path)) == [
        ("list.json:0", {"a": 1}),
        ("list.json:1", {"a": 2}),
    ]
    (tmp_path / "dict.json").write_text('{"a": 1}')
    with pytest.raises(SourceError, match=r"dict.json: a .json dataset must hold a list"):
        _rows(open_source(str(tmp_path / "dict.json"), cache_dir=tmp_path))
    (tmp_path / "bad.json").write_text("[{")
    with pytest.raises(SourceError, match=r"bad.json: not a JSON list"):
        _rows(open_source(str(tmp_path / "bad.json"), cache_dir=tmp_path))


def test_csv_rows_under_the_header_with_long_rows_as_row_errors(tmp_path):
    (tmp_path / "rows.csv").write_text('q,a\nhi,"multi\nline"\nx,y,extra\n', encoding="utf-8")
    source = open_source(str(tmp_path / "rows.csv"), cache_dir=tmp_path)
    assert len(source.shards(1)) == 1, "quoted newlines: a CSV file is never cut"
    assert _rows(source, 1) == [
        ("rows.csv:1", {"q": "hi", "a": "multi\nline"}),
        ("rows.csv:2", "unparseable"),
    ]
    (tmp_path / "latin.csv").write_bytes(b"q,a\n\xe9,x\n")
    with pytest.raises(SourceError, match=r"latin.csv: not UTF-8"):
        _rows(open_source(str(tmp_path / "latin.csv"), cache_dir=tmp_path))
    (tmp_path / "empty.csv").write_text("")
    with pytest.raises(SourceError, match=r"empty.csv: a .csv dataset needs a header"):
        _rows(open_source(str(tmp_path / "empty.csv"), cache_dir=tmp_path))


def test_parquet_rows_from_one_and_unreadable_parquet_is_a_source_error(tmp_path):
    pa = pytest.importorskip("pyarrow")
    pq = pytest.importorskip("pyarrow.parquet")
    pq.write_table(pa.Table.from_pylist([{"text": "a"}, {"text": "b"}]), tmp_path / "rows.parquet")
    assert _rows(open_source(str(tmp_path / "rows.parquet"), cache_dir=tmp_path)) == [
        ("rows.parquet:1", {"text": "a"}),
        ("rows.parquet:2", {"text": "b"}),
    ]
    (tmp_path / "junk.parquet").write_bytes(b"not parquet at all")
    with pytest.raises(SourceError, match=r"junk.parquet: not a readable Parquet file"):
        open_source(str(tmp_path / "junk.parquet"), cache_dir=tmp_path).shards()


# ------------------------------------------------------------------------------------------- sharding


def test_jsonl_shards_concatenate_to_the_whole_file(tmp_path):
    path = tmp_path / "rows.jsonl"
    lines = [json.dumps({"text": f"row {i} " + "x" * (i * 7 % 53)}).encode() for i in range(400)]
    lines[10] = b""  # blank: skipped, but still counted
    lines[20] = b'{"text": "\xff"}'
    lines[30] = b"{broken"
    lines[40] = json.dumps({"text": "y" * 3000}).encode()  # longer than several targets
    path.write_bytes(b"\n".join(lines) + b"\n")
    source = open_source(str(path), cache_dir=tmp_path)
    whole = _whole(path, "rows.jsonl")
    for target in (1, 97, 700, 5000, path.stat().st_size):
        shards = source.shards(target)
        assert all(s.stop is None or s.start < s.stop for s in shards)
        assert _rows(source, target) == whole, target
    assert len(source.shards(700)) > 20
    ids = dict(whole)
    assert "rows.jsonl:11" not in ids and ids["rows.jsonl:21"] == "not_utf8"
    assert ids["rows.jsonl:31"] == "unparseable" and ids["rows.jsonl:400"]["text"].startswith("row 399")


def test_jsonl_line_numbers_are_right_across_index_blocks(tmp_path, monkeypatch):
    # A tiny block makes the newline index from the fingerprint pass cover many blocks.
    monkeypatch.setattr(shards, "BLOCK", 64)
    path = tmp_path / "rows.jsonl"
    path.write_bytes(b"".join(json.dumps({"n": i}).encode() + b"\n" + b"\n" * (i % 3) for i in range(300)))
    source = open_source(str(path), cache_dir=tmp_path)
    assert path in source._line_indexes
    assert _rows(source, 150) == _whole(path, "rows.jsonl")
    stale = Source(source.uri, source.files, source.labels, source.fingerprint)  # no index: rebuilt
    assert _rows(stale, 150) == _whole(path, "rows.jsonl")


def test_a_shard_reads_the_lines_that_start_in_its_byte_range(tmp_path):
    path = tmp_path / "rows.jsonl"
    path.write_bytes(b'{"n": 1}\n{"n": 2}\n{"n": 3}\n')
    mid_line = Shard("rows.jsonl", "jsonl", str(path), start=3, stop=18, first_number=2)
    assert [r for _, r in mid_line.records()] == [{"n": 2}]
    assert [i for i, _ in Shard("rows.jsonl", "jsonl", str(path), 9, None, 2).records()] == [
        "rows.jsonl:2",
        "rows.jsonl:3",
    ]


def test_parquet_shards_follow_row_groups(tmp_path):
    pa = pytest.importorskip("pyarrow")
    pq = pytest.importorskip("pyarrow.parquet")
    path = tmp_path / "rows.parquet"
    pq.write_table(pa.Table.from_pylist([{"text": f"r{i}"} for i in range(2500)]), path, row_group_size=300)
    source = open_source(str(path), cache_dir=tmp_path)
    shards = source.shards(1)
    assert len(shards) == 9 and [s.first_number for s in shards] == [1 + 300 * i for i in range(9)]
    assert _rows(source, 1) == _rows(source) == _whole(path, "rows.parquet")
    assert _rows(source, 3000) == _rows(source)
    assert _rows(source)[-1] == ("rows.parquet:2500", {"text": "r2499"})


# ----------------------------------------------------------------------------- globs and fingerprints


def test_globs_sort_files_and_label_them_below_the_fixed_base(tmp_path):
    for part in ("a", "b/c"):
        (tmp_path / part).mkdir(parents=True)
        (tmp_path / part / "rows.jsonl").write_text('{"text": "x"}\n')
    (tmp_path / "top.jsonl").write_text('{"text": "t"}\n')
    recursive = open_source(str(tmp_path / "**" / "*.jsonl"), cache_dir=tmp_path)
    assert recursive.labels == ["a/rows.jsonl", "b/c/rows.jsonl", "top.jsonl"]
    assert [i for i, _ in _rows(recursive)] == ["a/rows.jsonl:1", "b/c/rows.jsonl:1", "top.jsonl:1"]
    flat = open_source((tmp_path / "[a-z]*.jsonl").as_uri(), cache_dir=tmp_path)
    assert flat.labels == ["top.jsonl"]
    assert open_source(str(tmp_path / "?" / "rows.jsonl"), cache_dir=tmp_path).labels == ["a/rows.jsonl"]


def test_fingerprint_follows_bytes_and_labels(tmp_path):
    path = tmp_path / "rows.jsonl"
    path.write_text('{"text": "x"}\n')
    first = open_source(str(path), cache_dir=tmp_path).fingerprint
    assert open_source(path.as_uri(), cache_dir=tmp_path).fingerprint == first
    copy = tmp_path / "copy"
    copy.mkdir()
    (copy / "rows.jsonl").write_bytes(path.read_bytes())
    assert open_source(str(copy / "rows.jsonl"), cache_dir=tmp_path).fingerprint == first, "same bytes"
    path.write_text('{"text": "y"}\n')
    assert open_source(str(path), cache_dir=tmp_path).fingerprint != first


def test_missing_files_empty_globs_directories_and_unknown_builtins_are_named(tmp_path):
    with pytest.raises(SourceError, match=r"dataset uri '.*nope.jsonl': no such file .*nope.jsonl"):
        open_source(str(tmp_path / "nope.jsonl"), cache_dir=tmp_path)
    with pytest.raises(SourceError, match=r"no file matches .*\*\.parquet"):
        open_source(str(tmp_path / "*.parquet"), cache_dir=tmp_path)
    with pytest.raises(SourceError, match=r"is a directory"):
        open_source(str(tmp_path), cache_dir=tmp_path)
    with pytest.raises(SourceError, match=r"unsupported scheme"):
        open_source("gs://bucket/rows.jsonl", cache_dir=tmp_path)
    with pytest.raises(SourceError, match=r"known: .*tuna_identity"):
        open_source("builtin:nope", cache_dir=tmp_path)


def test_builtin_datasets_read_from_include_data(tmp_path):
    source = open_source("builtin:tuna_identity", cache_dir=tmp_path)
    assert source.labels == ["tuna_identity.jsonl"] and source.files[0].parent.name == "data"
    assert _rows(source)[0][0] == "tuna_identity.jsonl:1"


# ------------------------------------------------------------------------------------------------ S3


@pytest.fixture(scope="module")
def moto_endpoint():
    pytest.importorskip("boto3")
    server_module = pytest.importorskip("moto.server")
    server = server_module.ThreadedMotoServer(ip_address="127.0.0.1", port=free_port(), verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


@pytest.fixture
def s3(moto_endpoint, tmp_path, monkeypatch):
    """A fresh moto state with bucket 'data', reached over HTTP through the standard AWS environment."""
    urllib.request.urlopen(urllib.request.Request(f"{moto_endpoint}/moto-api/reset", method="POST"))
    for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_ENDPOINT_URL_S3"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_ENDPOINT_URL", moto_endpoint)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing-secret")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-aws-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-aws-credentials"))
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    client = s3_client()
    client.create_bucket(Bucket="data")
    for key in ("train/part-0.jsonl", "train/sub/part-1.jsonl", "other/x.jsonl"):
        client.put_object(Bucket="data", Key=key, Body=json.dumps({"text": key}).encode() + b"\n")
    return client


@pytest.fixture
def downloads(monkeypatch) -> list[str]:
    keys: list[str] = []
    real = s3_backend.download_objects

    def counting(client, bucket, targets):
        keys.extend(targets)
        return real(client, bucket, targets)

    monkeypatch.setattr(s3_backend, "download_objects", counting)
    return keys


def test_s3_single_key_downloads_into_the_cache(s3, tmp_path, downloads):
    cache = tmp_path / "cache"
    source = open_source("s3://data/other/x.jsonl", cache_dir=cache)
    assert source.files == [cache / "s3" / "data" / "other" / "x.jsonl"] and source.labels == ["x.jsonl"]
    assert _rows(source) == [("x.jsonl:1", {"text": "other/x.jsonl"})]
    assert downloads == ["other/x.jsonl"]
    assert not [p for p in source.files[0].parent.iterdir() if p.name.endswith(".tmp")]


def test_s3_globs_list_keys_and_reuse_the_cache_by_etag(s3, tmp_path, downloads):
    cache = tmp_path / "cache"
    source = open_source("s3://data/train/*.jsonl", cache_dir=cache)
    assert source.labels == ["part-0.jsonl", "sub/part-1.jsonl"], "fnmatch '*' crosses '/'"
    assert [r for _, r in _rows(source)] == [
        {"text": "train/part-0.jsonl"},
        {"text": "train/sub/part-1.jsonl"},
    ]
    assert len(downloads) == 2
    mtime = source.files[0].stat().st_mtime_ns
    again = open_source("s3://data/train/*.jsonl", cache_dir=cache)
    assert len(downloads) == 2 and source.files[0].stat().st_mtime_ns == mtime, "cached by ETag"
    assert again.fingerprint == source.fingerprint
    s3.put_object(Bucket="data", Key="train/part-0.jsonl", Body=b'{"text": "changed"}\n')
    changed = open_source("s3://data/train/*.jsonl", cache_dir=cache)
    assert downloads[2:] == ["train/part-0.jsonl"] and changed.fingerprint != source.fingerprint
    assert _rows(changed)[0] == ("part-0.jsonl:1", {"text": "changed"})


def test_s3_missing_keys_buckets_and_empty_globs_name_the_uri(s3, tmp_path):
    with pytest.raises(SourceError, match=r"'s3://data/train/nope.jsonl'.*no such key"):
        open_source("s3://data/train/nope.jsonl", cache_dir=tmp_path)
    with pytest.raises(SourceError, match=r"'s3://no-such-bucket/x.jsonl'.*no such bucket 'no-such-bucket'"):
        open_source("s3://no-such-bucket/x.jsonl", cache_dir=tmp_path)
    with pytest.raises(SourceError, match=r"no such bucket 'no-such-bucket'"):
        open_source("s3://no-such-bucket/*.jsonl", cache_dir=tmp_path)
    with pytest.raises(SourceError, match=r"no object in bucket 'data' matches 'train/\*\.parquet'"):
        open_source("s3://data/train/*.parquet", cache_dir=tmp_path)


def test_s3_credential_errors_never_echo_the_secret(s3, tmp_path, monkeypatch):
    monkeypatch.delenv("AWS_ACCESS_KEY_ID")
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    with pytest.raises(SourceError, match=r"no credentials found") as raised:
        open_source("s3://data/other/x.jsonl", cache_dir=tmp_path)
    assert "testing-secret" not in str(raised.value)


# ------------------------------------------------------------------------------------- Hugging Face


@pytest.fixture
def hf_home(tmp_path, monkeypatch):
    """datasets reads its cache and offline settings at import: patch the module values too."""
    datasets = pytest.importorskip("datasets")
    import huggingface_hub.constants

    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.setenv("HF_DATASETS_CACHE", str(tmp_path / "hf" / "datasets"))
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", tmp_path / "hf" / "datasets")
    monkeypatch.setattr(datasets.config, "HF_MODULES_CACHE", tmp_path / "hf" / "modules")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(datasets.config, "HF_DATASETS_OFFLINE", True, raising=False)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    return tmp_path


def test_hf_save_to_disk_dataset_dicts_load_by_split(hf_home):
    import datasets

    saved = hf_home / "saved"
    datasets.DatasetDict(
        {
            "train": datasets.Dataset.from_list([{"text": f"t{i}"} for i in range(5)]),
            "test": datasets.Dataset.from_list([{"text": "only test"}, {"text": "second"}]),
        }
    ).save_to_disk(str(saved))
    cache = hf_home / "cache"
    source = open_source(f"hf:{saved}@test", cache_dir=cache)
    assert source.labels == ["saved@test"] and source.files[0].name == "test.parquet"
    assert source.files[0].is_relative_to(cache / "hf")
    assert _rows(source) == [("saved@test:1", {"text": "only test"}), ("saved@test:2", {"text": "second"})]
    assert open_source(f"hf:{saved}@test", cache_dir=cache).fingerprint == source.fingerprint
    train = open_source(f"hf:{saved}", cache_dir=cache)
    assert train.labels == ["saved@train"] and len(_rows(train)) == 5
    assert train.fingerprint != source.fingerprint
    with pytest.raises(SourceError, match=r"no split 'validation'.*splits: train, test"):
        open_source(f"hf:{saved}@validation", cache_dir=cache)


def test_hf_local_data_directories_load_with_load_dataset(hf_home):
    files = hf_home / "files"
    files.mkdir()
    (files / "train.jsonl").write_text('{"text": "a"}\n{"text": "b"}\n')
    source = open_source(f"hf:{files}", cache_dir=hf_home / "cache")
    assert _rows(source) == [("files@train:1", {"text": "a"}), ("files@train:2", {"text": "b"})]


def test_hf_hub_names_fail_clearly_without_a_hub(hf_home):
    with pytest.raises(SourceError) as raised:
        open_source("hf:some-org/some-dataset@train", cache_dir=hf_home / "cache")
    message = str(raised.value)
    assert message.startswith("dataset uri 'hf:some-org/some-dataset@train': could not load from the Hugging")
    assert "save_to_disk" in message and "hf:<that dir>" in message and "JSONL/Parquet" in message


def test_hf_uri_parsing():
    assert hub_source._parse_hf("org/name") == ("org/name", None, "train")
    assert hub_source._parse_hf("org/name:cfg@test") == ("org/name", "cfg", "test")
    assert hub_source._parse_hf("org/name@validation") == ("org/name", None, "validation")
