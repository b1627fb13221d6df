"""`tunerflow dataset ...` driven through `tasks.cli.main.main` (fast: the preparation is monkeypatched)."""

from __future__ import annotations

import json
import sys
import types
from collections.abc import Callable
from typing import Any

import pytest

import tasks.data
from tasks.cli.main import main
from tasks.data import dataset_registry as reg
from tasks.storage import layout, store


@pytest.fixture
def root(store_root) -> str:
    return store_root


def run(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(["dataset", *argv])
    out, err = capsys.readouterr()
    return code, out, err


def patch_prepare(monkeypatch, prepare: Callable[[dict[str, Any]], dict[str, Any]]) -> None:
    """Stand in for tasks.data.preparation.prepare without importing the real (heavy) step module."""
    module = types.ModuleType("tasks.data.preparation")
    module.prepare = prepare  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "tasks.data.preparation", module)
    # The CLI imports tasks.data.preparation: the stub must also be the package's attribute, which
    # an earlier import of the real module would have set.
    monkeypatch.setattr(tasks.data, "preparation", module, raising=False)


def fake_version(root: str, name: str, version: str) -> None:
    prefix = layout.dataset_version(root, name, version)
    report = {"rows_in": 12, "rows_kept": 10, "rows_dropped": 2, "drop_reasons": {"too_long": 2}}
    store.write_json(store.join(prefix, "validation_report.json"), report)
    counts = {"train": 8, "validation": 1, "test": 1}
    store.commit(
        prefix, {"version": version, "counts": counts, "dropped": 2, "drop_reasons": {"too_long": 2}}
    )


def test_create_with_uri_and_options(root, capsys):
    code, out, _ = run(
        capsys,
        "create", "support", "--uri", "data/support.jsonl", "--format", "alpaca", "--split", "80,10,10",
        "--column", "instruction=question", "--column", "output=answer", "--max-tokens", "512",
        "--min-tokens", "2", "--seed", "3", "--pii", "redact", "--max-drop-ratio", "0.5", "--no-dedup",
        "--decontaminate-ngram", "0", "--max-row-bytes", "4194304", "--note", "first cut",
    )  # fmt: skip
    assert code == 0
    assert "dataset 'support' registered: revision 1 (data/support.jsonl, format alpaca)" in out
    record = reg.get(root, "support")
    assert record["columns"] == {"instruction": "question", "output": "answer"}
    assert (record["max_tokens"], record["min_tokens"], record["seed"]) == (512, 2, 3)
    assert record["pii"] == "redact" and record["max_drop_ratio"] == 0.5
    assert record["dedup"] is False and record["decontaminate_ngram"] == 0
    assert record["max_row_bytes"] == 4 << 20
    assert record["note"] == "first cut"


def test_create_with_weighted_sources(root, capsys):
    code, out, _ = run(
        capsys, "create", "mix", "--source", "a.jsonl=2", "--source", "b.jsonl", "--source", "c.jsonl=0.5",
        "--format", "sharegpt",
    )  # fmt: skip
    assert code == 0, out
    sources = reg.get(root, "mix")["sources"]
    assert [(s["uri"], s["weight"]) for s in sources] == [
        ("a.jsonl", 2.0),
        ("b.jsonl", 1.0),
        ("c.jsonl", 0.5),
    ]
    # With sources, --format describes each source's rows.
    assert {s["format"] for s in sources} == {"sharegpt"}
    assert "3 sources" in out


def test_create_pre_split(root, capsys):
    code, _, _ = run(
        capsys, "create", "presplit", "--train-uri", "t.jsonl", "--validation-uri", "v.jsonl",
        "--test-uri", "e.jsonl",
    )  # fmt: skip
    assert code == 0
    record = reg.get(root, "presplit")
    assert (record["train_uri"], record["validation_uri"], record["test_uri"]) == (
        "t.jsonl",
        "v.jsonl",
        "e.jsonl",
    )


def test_create_from_file_with_override(root, capsys, tmp_path):
    definition = tmp_path / "def.yaml"
    definition.write_text("name: ignored\nuri: data/a.jsonl\nsplit: 80,10,10\nseed: 5\n")
    code, _, _ = run(capsys, "create", "support", "--file", str(definition), "--seed", "9")
    assert code == 0
    record = reg.get(root, "support")
    assert (record["name"], record["uri"], record["split"], record["seed"]) == (
        "support",
        "data/a.jsonl",
        "80,10,10",
        9,
    )

    as_json = tmp_path / "def.json"
    as_json.write_text(json.dumps({"uri": "data/b.jsonl", "split": "80,10,10"}))
    code, _, _ = run(capsys, "create", "other", "--file", str(as_json), "--train-uri", "t.jsonl")
    assert code == 0
    record = reg.get(root, "other")
    # The pre-split option replaces the file's uri, and its split that no longer applies.
    assert (record["uri"], record["train_uri"], record["split"]) == (None, "t.jsonl", "90,5,5")


def test_list_table_and_json(root, capsys):
    run(capsys, "create", "support", "--uri", "x.jsonl")
    run(capsys, "create", "mix", "--source", "a.jsonl", "--source", "b.jsonl")
    fake_version(root, "support", "aaaa")
    code, out, _ = run(capsys, "list")
    assert code == 0
    lines = out.splitlines()
    assert lines[0].split() == ["NAME", "REV", "SOURCE", "FORMAT", "PREPARED", "LATEST", "TRAIN/VAL/TEST"]
    assert lines[2].split() == ["mix", "1", "2", "sources", "auto", "0", "-"]
    assert lines[3].split() == ["support", "1", "x.jsonl", "auto", "1", "8/1/1"]

    code, out, _ = run(capsys, "list", "--json")
    rows = json.loads(out)
    assert [r["name"] for r in rows] == ["mix", "support"]
    assert rows[1]["latest_counts"] == {"train": 8, "validation": 1, "test": 1}


def test_list_empty_and_explicit_store(tmp_path, capsys):
    other = (tmp_path / "elsewhere").as_uri()
    assert run(capsys, "create", "support", "--uri", "x.jsonl", "--store", other)[0] == 0
    code, out, _ = run(capsys, "list")
    assert code == 0 and "no registered datasets" in out
    assert "support" in run(capsys, "list", "--store", other)[1]


def test_show_json_and_text(root, capsys):
    run(capsys, "create", "support", "--uri", "x.jsonl", "--note", "first")
    run(capsys, "update", "support", "--max-tokens", "256", "--note", "cap")
    fake_version(root, "support", "aaaa")
    store.ensure_dir(layout.dataset_version(root, "support", "half"))

    code, out, _ = run(capsys, "show", "support", "--json")
    assert code == 0
    payload = json.loads(out)
    assert payload["definition"]["revision"] == 2 and payload["definition"]["max_tokens"] == 256
    assert [h["note"] for h in payload["history"]] == ["first", "cap"]
    versions = {v["version"]: v for v in payload["prepared_versions"]}
    assert versions["aaaa"]["ready"] and versions["aaaa"]["result"]["counts"]["train"] == 8
    assert not versions["half"]["ready"]

    code, out, _ = run(capsys, "show", "support", "--revision", "1", "--json")
    assert json.loads(out)["definition"]["max_tokens"] is None

    store.remove(layout.dataset_version(root, "support", "half"))
    code, out, _ = run(capsys, "show", "support")
    assert code == 0
    assert "uri: x.jsonl" in out and "max_tokens: 256" in out
    assert "max_tokens  cap" in out
    assert "train 8, validation 1, test 1; dropped 2 (too_long 2)" in out
    assert "12 rows in, 10 kept, 2 dropped" in out and "too_long: 2" in out


def test_update_changes_only_given_options(root, capsys):
    run(capsys, "create", "support", "--uri", "x.jsonl", "--split", "80,10,10", "--pii", "drop")
    code, out, _ = run(capsys, "update", "support", "--seed", "7", "--note", "reshuffle")
    assert code == 0
    assert "dataset 'support' updated: revision 2 (changed: seed)" in out
    record = reg.get(root, "support")
    assert (record["seed"], record["split"], record["pii"]) == (7, "80,10,10", "drop")

    code, out, _ = run(capsys, "update", "support", "--unset", "split")
    assert code == 0 and reg.get(root, "support")["split"] == "90,5,5"

    code, _, err = run(capsys, "update", "support", "--seed", "7")
    assert code == 2 and "nothing changes" in err


def test_update_format_of_a_mixed_dataset_goes_to_each_source(root, capsys):
    run(capsys, "create", "mix", "--source", "a.jsonl=2", "--source", "b.jsonl")
    assert run(capsys, "update", "mix", "--format", "alpaca")[0] == 0
    sources = reg.get(root, "mix")["sources"]
    assert [(s["weight"], s["format"]) for s in sources] == [(2.0, "alpaca"), (1.0, "alpaca")]


def test_delete_asks_or_refuses(root, capsys, monkeypatch):
    run(capsys, "create", "support", "--uri", "x.jsonl")
    fake_version(root, "support", "aaaa")

    # No terminal and no --yes: refuse.
    code, _, err = run(capsys, "delete", "support")
    assert code == 2 and "pass --yes" in err
    assert reg.get(root, "support")

    monkeypatch.setattr("sys.stdin.isatty", lambda: True)
    monkeypatch.setattr("builtins.input", lambda prompt: "n")
    code, out, _ = run(capsys, "delete", "support")
    assert code == 1 and "nothing deleted" in out

    monkeypatch.setattr("builtins.input", lambda prompt: "y")
    code, out, _ = run(capsys, "delete", "support")
    assert code == 0 and "deleted dataset 'support' (1 revisions)" in out
    assert store.is_committed(layout.dataset_version(root, "support", "aaaa"))


def test_delete_yes_purge(root, capsys):
    run(capsys, "create", "support", "--uri", "x.jsonl")
    fake_version(root, "support", "aaaa")
    code, out, _ = run(capsys, "delete", "support", "--yes", "--purge")
    assert code == 0 and "purged versions: aaaa" in out
    assert not store.exists(layout.dataset_version(root, "support", "aaaa"))
    assert run(capsys, "list", "--json")[1].strip() == "[]"


def test_prepare_calls_the_prepare_step(root, capsys, monkeypatch):
    from tasks.config.catalog import models

    calls = []

    def fake_prepare(spec):
        job = spec.model_dump(mode="json")  # the PrepareSpec as the step would store it
        calls.append(job)
        counts = {"train": 90, "validation": 5, "test": 5}
        return {"name": job["dataset"]["name"], "version": "abc123", "uri": "file:///x", "kind": "chat",
                "counts": counts, "dropped": 3, "drop_reasons": {"duplicate": 3}}  # fmt: skip

    patch_prepare(monkeypatch, fake_prepare)
    run(capsys, "create", "support", "--uri", "x.jsonl", "--split", "80,10,10")
    model = next(iter(models()))
    code, out, _ = run(capsys, "prepare", "support", "--model", model)
    assert code == 0
    assert (
        "prepared: version abc123" in out and "train 90, validation 5, test 5; dropped 3 (duplicate 3)" in out
    )
    job = calls[0]
    assert job["store_root"] == root
    assert job["dataset"]["name"] == "support" and job["dataset"]["split"] == "80,10,10"
    assert "revision" not in job["dataset"]
    assert [t["name"] for t in job["tokenizers"]] == [model]

    code, out, _ = run(capsys, "create", "other", "--uri", "y.jsonl", "--prepare")
    assert code == 0 and "registered" in out and "version abc123" in out
    assert calls[-1]["dataset"]["name"] == "other" and calls[-1]["tokenizers"] == []


def test_prepare_failures(root, capsys, monkeypatch):
    def failing_prepare(job):
        raise RuntimeError("dataset 'support': 40% of rows dropped")

    patch_prepare(monkeypatch, failing_prepare)
    run(capsys, "create", "support", "--uri", "x.jsonl")
    code, _, err = run(capsys, "prepare", "support")
    assert code == 1 and "40% of rows dropped" in err
    code, _, err = run(capsys, "prepare", "support", "--model", "no-such-model")
    assert code == 2 and "'no-such-model' is not in the catalog" in err
    code, _, err = run(capsys, "prepare", "nope")
    assert code == 2 and "no registered dataset 'nope'; registered: support" in err


def test_errors_exit_2_with_the_field(root, capsys):
    code, _, err = run(capsys, "create", "bad", "--uri", "x.jsonl", "--split", "50,10,10")
    assert code == 2
    assert "split: split '50,10,10' sums to 70" in err
    code, _, err = run(capsys, "create", "bad", "--uri", "x.jsonl", "--max-drop-ratio", "2")
    assert code == 2 and "max_drop_ratio:" in err
    code, _, err = run(capsys, "create", "bad", "--uri", "x.jsonl", "--max-row-bytes", "10")
    assert code == 2 and "max_row_bytes: max_row_bytes 10 is outside" in err
    code, _, err = run(capsys, "create", "bad")
    assert code == 2 and "give exactly one of uri" in err
    code, _, err = run(capsys, "create", "bad", "--uri", "x.jsonl", "--column", "instruction")
    assert code == 2 and "expected KEY=VALUE" in err
    code, _, err = run(capsys, "create", "bad", "--file", "/no/such/file.yaml")
    assert code == 2 and "--file" in err
    assert run(capsys, "create", "dup", "--uri", "x.jsonl")[0] == 0
    code, _, err = run(capsys, "create", "dup", "--uri", "x.jsonl")
    assert code == 2 and "already registered; use `tunerflow dataset update dup`" in err
    for argv in (("show", "nope"), ("update", "nope", "--seed", "1"), ("delete", "nope", "--yes")):
        code, _, err = run(capsys, *argv)
        assert code == 2 and "no registered dataset 'nope'; registered: dup" in err
    code, _, err = run(capsys, "update", "dup", "--unset", "name")
    assert code == 2 and "--unset name" in err
    with pytest.raises(SystemExit) as exit_info:
        main(["dataset", "create", "x", "--pii", "maybe"])
    assert exit_info.value.code == 2


def test_existing_commands_still_parse(capsys):
    assert main(["schema"]) == 0
    assert json.loads(capsys.readouterr().out)
