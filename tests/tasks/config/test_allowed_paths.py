"""TUNERFLOW_ALLOWED_PATHS: traversal, symlinks, prefix tricks, file:// URIs, globs and relative paths are
judged after resolving; validate_conf refuses a conf reading outside the roots, naming the field."""

from __future__ import annotations

import os

import pytest

from tasks.config import allowed_paths
from tasks.config.base import ConfError
from tasks.config.paths import data_dir
from tasks.pipeline.plan import validate_conf
from tasks.storage import store


@pytest.fixture
def data(tmp_path):
    root = tmp_path / "data"
    root.mkdir()
    (root / "rows.jsonl").write_text('{"text": "x"}\n')
    (tmp_path / "data-evil").mkdir()
    (tmp_path / "data-evil" / "rows.jsonl").write_text('{"text": "x"}\n')
    (tmp_path / "secret.jsonl").write_text('{"text": "x"}\n')
    return root


def _ok(path, roots) -> bool:
    return allowed_paths.uri_problem("datasets.0.uri", str(path), roots) is None


def test_paths_under_a_root_pass_and_outside_ones_are_refused(data, tmp_path):
    roots = [data]
    assert _ok(data / "rows.jsonl", roots)
    assert _ok((data / "rows.jsonl").as_uri(), roots)
    assert not _ok(tmp_path / "secret.jsonl", roots)
    assert not _ok((tmp_path / "secret.jsonl").as_uri(), roots)
    assert not _ok("/etc/passwd", roots)


def test_dot_dot_traversal_is_resolved_before_the_check(data, tmp_path):
    assert not _ok(f"{data}/../secret.jsonl", [data])
    assert not _ok(f"file://{data}/../secret.jsonl", [data])
    assert not _ok(f"file://{data}/%2e%2e/secret.jsonl", [data]), "a percent-encoded .. is decoded first"
    assert _ok(f"{data}/sub/../rows.jsonl", [data])


def test_a_sibling_sharing_the_roots_prefix_is_outside(data, tmp_path):
    assert not _ok(tmp_path / "data-evil" / "rows.jsonl", [data])


def test_a_symlink_inside_a_root_pointing_outside_is_refused(data, tmp_path):
    (data / "link.jsonl").symlink_to(tmp_path / "secret.jsonl")
    (data / "escape").symlink_to(tmp_path)
    assert not _ok(data / "link.jsonl", [data])
    assert not _ok(data / "escape" / "secret.jsonl", [data])


def test_globs_are_judged_by_their_base_and_may_not_climb_after_a_wildcard(data, tmp_path):
    assert _ok(f"{data}/*.jsonl", [data])
    assert _ok(f"{data}/**/*.jsonl", [data])
    assert not _ok(f"{tmp_path}/*/rows.jsonl", [data])
    assert not _ok(f"{data}/*/../../secret.jsonl", [data])


def test_relative_paths_resolve_against_the_working_directory(data, tmp_path, monkeypatch):
    monkeypatch.chdir(data)
    assert _ok("rows.jsonl", [data])
    assert not _ok("../secret.jsonl", [data])


def test_remote_and_named_sources_are_not_local_paths(data):
    for uri in ("s3://bucket/rows.jsonl", "hf:org/name", "hf:org/name:config@train", "builtin:tuna_identity"):
        assert _ok(uri, [data]), uri
    assert not _ok("hf:/etc/datasets", [data]), "an hf: save_to_disk directory is a local path"
    assert not _ok("hf:../secret:config@train", [data])


def test_a_path_the_os_cannot_resolve_is_refused_not_raised(data):
    """Found by tests/tasks/pipeline/test_hostile_validate_conf.py: a NUL byte raised ValueError."""
    assert not _ok("\x00", [data])
    assert not _ok(f"{data}/rows\x00.jsonl", [data])


def test_the_message_names_the_field_the_uri_and_the_roots(data, tmp_path):
    problem = allowed_paths.uri_problem("models.1.uri", str(tmp_path / "secret.jsonl"), [data])
    assert problem.startswith("models.1.uri: ")
    assert str(data) in problem and "TUNERFLOW_ALLOWED_PATHS" in problem


def test_the_setting_takes_pathsep_or_commas_and_unset_allows_everything(monkeypatch, data, tmp_path):
    monkeypatch.setenv("TUNERFLOW_ALLOWED_PATHS", f"{data}{os.pathsep}{tmp_path / 'other'}, /srv/x")
    assert allowed_paths.configured() == [data, tmp_path / "other", allowed_paths.parse("/srv/x")[0]]
    monkeypatch.delenv("TUNERFLOW_ALLOWED_PATHS")
    assert allowed_paths.configured() is None
    assert allowed_paths.uri_problem("datasets.0.uri", "/etc/passwd", allowed_paths.configured()) is None


def test_the_server_default_is_the_store_data_and_config_dirs_never_root(monkeypatch, tmp_path):
    monkeypatch.delenv("TUNERFLOW_ALLOWED_PATHS")
    monkeypatch.setenv("TUNERFLOW_CACHE_DIR", str(tmp_path / "cache"))
    roots = allowed_paths.server_roots((tmp_path / "store").as_uri())
    assert tmp_path / "store" in roots and data_dir().resolve() in roots and tmp_path / "cache" in roots
    assert allowed_paths.parse("/")[0] not in roots
    assert not allowed_paths.is_allowed("/etc/passwd", roots)
    assert allowed_paths.server_roots("s3://bucket/store") == roots[1:], "a remote store adds no local root"
    monkeypatch.setenv("TUNERFLOW_ALLOWED_PATHS", str(tmp_path))
    assert allowed_paths.server_roots("s3://bucket/store") == [tmp_path]


def _conf(**dataset):
    return {
        "name": "exp",
        "datasets": [{"name": "a", **dataset}],
        "models": [{"name": "m1", "uri": "/models/m1"}],
        "hparams": [{"preset": "lora-fast"}],
    }


def test_validate_conf_refuses_a_dataset_outside_and_creates_nothing(store_root, data, tmp_path):
    conf = _conf(uri=f"{data}/../secret.jsonl")
    with pytest.raises(ConfError, match=r"datasets\.0\.uri: .*outside"):
        validate_conf(conf, "manual__1", store_root, allowed_roots=[data, allowed_paths.parse("/models")[0]])
    assert not store.local_path(store_root).exists() or not any(store.local_path(store_root).rglob("*"))


def test_validate_conf_names_sources_presplit_eval_and_model_fields(store_root, data, tmp_path):
    outside = str(tmp_path / "secret.jsonl")
    conf = _conf(sources=[{"uri": f"{data}/rows.jsonl"}, {"uri": outside}])
    conf["models"][0]["uri"] = f"file://{tmp_path}/model"
    conf["scoring"] = {"eval_dataset": {"name": "held", "uri": outside}}
    with pytest.raises(ConfError) as error:
        validate_conf(conf, "manual__1", store_root, allowed_roots=[data])
    message = str(error.value)
    for field in ("datasets.0.sources.1.uri", "scoring.eval_dataset.uri", "models.0.uri"):
        assert f"{field}: " in message, field
    assert "datasets.0.sources.0.uri" not in message


def test_validate_conf_uses_the_setting_when_no_roots_are_given(store_root, data, tmp_path, monkeypatch):
    monkeypatch.setenv("TUNERFLOW_ALLOWED_PATHS", str(data))
    with pytest.raises(ConfError, match=r"datasets\.0\.train_uri"):
        validate_conf(_conf(train_uri=str(tmp_path / "secret.jsonl")), "manual__1", store_root)
    monkeypatch.setenv("TUNERFLOW_ALLOWED_PATHS", os.sep)
    assert validate_conf(_conf(uri=str(data / "rows.jsonl")), "manual__1", store_root)


def test_validate_conf_checks_a_registered_datasets_files(store_root, data, tmp_path):
    from tasks.data import dataset_registry

    dataset_registry.create(store_root, {"name": "support", "uri": str(tmp_path / "secret.jsonl")})
    conf = {**_conf(registered="support"), "models": [{"name": "m1", "uri": f"{data}/model"}]}
    with pytest.raises(ConfError, match=r"datasets\.0\.uri: .*secret\.jsonl' is outside"):
        validate_conf(conf, "manual__1", store_root, allowed_roots=[data])
