"""`tunerflow dataset create ... --prepare` running the real preparation step: the checks a definition
turns on run (the length check with the catalog's default tokenizer when no --model is given) or the
preparation is refused, never silently skipped."""

from __future__ import annotations

import json
from pathlib import Path

import tasks.cli.dataset as cli_dataset
from tasks.cli.main import main
from tasks.config.catalog import CatalogEntry, default_model, models
from tasks.data import dataset_registry
from tasks.storage import store


def run(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(["dataset", *argv])
    out, err = capsys.readouterr()
    return code, out, err


def _rows_file(path: Path) -> str:
    rows = [
        {"instruction": f"Question {i} about the tides of the northern sea?", "output": f"Answer {i}."}
        for i in range(9)
    ]
    # About 20,000 tokens: a row no training job could hold.
    rows.append({"instruction": "Summarise this.", "output": " ".join(f"w{i}" for i in range(10_000))})
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return str(path)


def _latest_report(root: str, name: str) -> dict:
    (version,) = dataset_registry.prepared_versions(root, name)
    assert version["ready"]
    return store.read_json(store.join(version["uri"], "validation_report.json"))


def test_the_default_model_is_the_bundled_one():
    entry = default_model()
    assert entry.source.gguf is not None and entry.name in models()


def test_max_tokens_without_model_runs_with_the_default_tokenizer(
    store_root, tmp_path, capsys, monkeypatch, tiny_model_dir
):
    tiny = CatalogEntry(name="tiny", source={"path": str(tiny_model_dir)}, kind="uri")
    monkeypatch.setattr(cli_dataset, "default_model", lambda: tiny)
    uri = _rows_file(tmp_path / "rows.jsonl")
    code, out, err = run(capsys, "create", "long", "--uri", uri, "--max-tokens", "512", "--prepare")
    assert code == 0, err
    assert "max_tokens 512 with the tokenizer of 'tiny', the catalog's default model" in out
    assert "dropped 1 (too_long 1)" in out
    report = _latest_report(store_root, "long")
    assert report["drop_reasons"] == {"too_long": 1}
    (length,) = [check for check in report["checks"] if check["name"] == "max_tokens"]
    assert length["ran"] and length["dropped"] == 1 and length["tokenizers"] == ["tiny"]


def test_max_tokens_without_a_loadable_tokenizer_is_refused_naming_the_option(
    store_root, tmp_path, capsys, monkeypatch
):
    broken = CatalogEntry(name="broken", source={"path": str(tmp_path / "no-model")}, kind="uri")
    monkeypatch.setattr(cli_dataset, "default_model", lambda: broken)
    uri = _rows_file(tmp_path / "rows.jsonl")
    code, _, err = run(capsys, "create", "long", "--uri", uri, "--max-tokens", "512", "--prepare")
    assert code == 1
    assert "max_tokens 512 need a tokenizer, and the tokenizer of broken could not be loaded" in err
    assert "pass --model CATALOG_NAME" in err and "smollm2-135m-instruct" in err
    assert [v["ready"] for v in dataset_registry.prepared_versions(store_root, "long")] == [False]


def test_dedup_modes_on_the_command_line(store_root, capsys):
    code, _, err = run(
        capsys, "create", "a", "--uri", "x.jsonl", "--dedup", "near", "--near-dedup-threshold", "0.7"
    )
    assert code == 0, err
    record = dataset_registry.get(store_root, "a")
    assert record["dedup"] == "near" and record["near_dedup_threshold"] == 0.7
    assert run(capsys, "create", "b", "--uri", "x.jsonl", "--no-dedup")[0] == 0
    assert dataset_registry.get(store_root, "b")["dedup"] is False
    code, _, err = run(capsys, "create", "c", "--uri", "x.jsonl", "--near-dedup-threshold", "0.7")
    assert code == 2 and "near_dedup_threshold only apply with dedup: near" in err
