from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from tasks.config.catalog import CatalogEntry
from tasks.config.dataset import DatasetConfig
from tasks.contracts.prepare import EvalPrompt, PrepareSpec
from tasks.data.preparation import prepare
from tasks.runtime.errors import StepError
from tasks.storage import store


def u(content):
    return {"role": "user", "content": content}


def a(content):
    return {"role": "assistant", "content": content}


def chat(question, answer):
    return {"messages": [u(question), a(answer)]}


@pytest.fixture
def tiny_tokenizer(tiny_model_dir) -> CatalogEntry:
    return tiny_entry(tiny_model_dir)


def tiny_entry(model_dir: Path) -> CatalogEntry:
    return CatalogEntry(name="tiny", source={"path": str(model_dir)}, kind="uri")


def _lines(result: dict, name: str) -> list[dict]:
    path = store.local_path(store.join(result["uri"], name))
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def _count(tokenizer_dir: Path, row: dict) -> int:
    from tasks.data.token_counts import TokenCounter, prepare_tokenizers

    specs = prepare_tokenizers([tiny_entry(tokenizer_dir)], "file:///unused", tokenizer_dir)
    return int(TokenCounter(specs).count([row])["tiny"][0])


LEAKED = "please explain in detail how the water cycle moves moisture from the oceans to the clouds and back"


def _bad_rows_fixture(directory: Path) -> tuple[dict[str, str], list[str]]:
    """A pre-split dataset whose train file holds one row per drop reason, and the good rows it keeps."""
    test_rows = [
        chat(LEAKED.capitalize() + "?", "Evaporation, condensation, rain."),
        chat("Name a colour you would like to see in the evening sky.", "Red, like a sunset."),
    ]
    (directory / "test.jsonl").write_text("".join(json.dumps(r) + "\n" for r in test_rows))
    long_answer = " ".join(["word"] * 300)
    train = [
        json.dumps(chat("What is the capital city of France, and why?", "Paris, by history.")),  # 1 good
        "{not json",  # 2
        json.dumps({"conversation": []}),  # 3 missing_field
        json.dumps(chat("   ", "empty question")),  # 4 empty_field
        json.dumps(
            chat("WHAT is the capital city of  France, and why?", "Paris, by history.")
        ),  # 5 duplicate
        json.dumps({"messages": [u("Which number?"), {"role": "assistant", "content": 5}]}),  # 6 bad_type
        json.dumps({"messages": [u("Hello there, how are you?"), {"role": "robot", "content": "beep"}]}),  # 7
        json.dumps({"messages": [a("I speak first, which is wrong."), u("Indeed it is.")]}),  # 8 order
        json.dumps(
            chat("Summarise the rules of chess for a beginner.", "Move pieces; checkmate wins.")
        ),  # 9 good
        json.dumps(chat("Write a very long essay about words.", long_answer)),  # 10 too_long
        json.dumps(chat("Hi", "Yo")),  # 11 too_short
        json.dumps(chat(f"Tell me: {LEAKED}, thanks", "Sure.")),  # 12 overlaps_eval
        json.dumps(
            chat("Contact jane.doe@example.com for the keys to the office.", "Noted, thank you.")
        ),  # 13
        json.dumps(test_rows[1]),  # 14 duplicate of a test row
        json.dumps(chat("Can you help me plan a weekend trip?", "As an AI language model, I cannot.")),  # 15
    ]
    raw = ("\n".join(train) + "\n").encode() + b'{"messages": "\xff\xfe"}\n'  # 16 not_utf8
    (directory / "train.jsonl").write_bytes(raw)
    expected = {
        "train.jsonl:2": "unparseable",
        "train.jsonl:3": "missing_field",
        "train.jsonl:4": "empty_field",
        "train.jsonl:5": "duplicate",
        "train.jsonl:6": "bad_type",
        "train.jsonl:7": "bad_role",
        "train.jsonl:8": "bad_role_order",
        "train.jsonl:10": "too_long",
        "train.jsonl:11": "too_short",
        "train.jsonl:12": "overlaps_eval",
        "train.jsonl:13": "pii",
        "train.jsonl:14": "duplicate",
        "train.jsonl:15": "refusal",
        "train.jsonl:16": "not_utf8",
    }
    return expected, ["train.jsonl:1", "train.jsonl:9"]


def test_every_bad_row_is_dropped_with_its_reason_and_every_good_row_kept(
    tmp_path, store_root, tiny_tokenizer, tiny_model_dir
):
    expected, good = _bad_rows_fixture(tmp_path)
    shortest_good = _count(
        tiny_model_dir, chat("What is the capital city of France, and why?", "Paris, by history.")
    )
    assert _count(tiny_model_dir, chat("Hi", "Yo")) < shortest_good
    dataset = {
        "name": "bad",
        "train_uri": str(tmp_path / "train.jsonl"),
        "test_uri": str(tmp_path / "test.jsonl"),
        "min_tokens": shortest_good - 2,
        "max_tokens": 128,
        "pii": "drop",
        "filters": ["drop_refusals"],
        "max_drop_ratio": 0.95,
    }
    result = prepare(PrepareSpec(store_root=store_root, dataset=dataset, tokenizers=[tiny_tokenizer]))
    rejected = {r["id"]: r for r in _lines(result, "rejected.jsonl")}
    assert {row_id: r["reason"] for row_id, r in rejected.items()} == expected
    assert [r["id"] for r in _lines(result, "train.jsonl")] == good
    assert [r["id"] for r in _lines(result, "test.jsonl")] == ["test.jsonl:1", "test.jsonl:2"]
    assert rejected["train.jsonl:5"]["detail"] == "same as train.jsonl:1"
    assert rejected["train.jsonl:14"]["detail"] == "same as test.jsonl:2"
    assert rejected["train.jsonl:12"]["detail"] == "shares a prompt n-gram with test.jsonl:1"
    assert rejected["train.jsonl:13"]["detail"] == "email"
    assert "tokens with tiny > 128" in rejected["train.jsonl:10"]["detail"]
    # Row text stays out of the rejected file and the report (they are shared more widely than the data).
    text = store.local_path(store.join(result["uri"], "rejected.jsonl")).read_text()
    text += store.local_path(store.join(result["uri"], "validation_report.json")).read_text()
    assert "capital" not in text and "jane" not in text and "water cycle" not in text
    report = store.read_json(store.join(result["uri"], "validation_report.json"))
    assert report["rows_in"] == 18 and report["rows_dropped"] == 14
    assert report["drop_reasons"] == {
        reason: list(expected.values()).count(reason) for reason in expected.values()
    }
    assert report["token_lengths"]["tiny"]["count"] == 4
    assert store.verify(result["uri"]) == []


def test_over_threshold_drop_ratio_fails_with_top_reasons_and_examples(tmp_path, store_root):
    _bad_rows_fixture(tmp_path)
    dataset = DatasetConfig(name="d", train_uri=str(tmp_path / "train.jsonl"), max_drop_ratio=0.2)
    with pytest.raises(StepError) as error:
        prepare(PrepareSpec(store_root=store_root, dataset=dataset))
    message = str(error.value)
    assert "dataset 'd': 8 of 16 rows dropped (50%), above max_drop_ratio 20%" in message
    assert (
        "Top reasons: unparseable (1)" in message and "Example rows: train.jsonl:2, train.jsonl:3" in message
    )
    assert not store.is_committed(store.join(store_root, "datasets", "d")), (
        "a failed version is not committed"
    )


def _text_rows(path: Path, n: int, prefix: str = "row") -> None:
    path.write_text(
        "".join(json.dumps({"text": f"{prefix} number {i} of the corpus"}) + "\n" for i in range(n))
    )


def test_splits_are_identical_across_runs_and_worker_counts_and_disjoint(
    tmp_path, monkeypatch, tiny_tokenizer
):
    _text_rows(tmp_path / "rows.jsonl", 3000)
    dataset = {"name": "t", "uri": str(tmp_path / "rows.jsonl"), "split": "80,10,10"}
    outputs = []
    for workers, shard_bytes in (("1", ""), ("2", "20000")):
        monkeypatch.setenv("TUNERFLOW_DATA_WORKERS", workers)
        monkeypatch.setenv("TUNERFLOW_DATA_SHARD_BYTES", shard_bytes)
        root = (tmp_path / f"store-{workers}").as_uri()
        outputs.append(prepare(PrepareSpec(store_root=root, dataset=dataset, tokenizers=[tiny_tokenizer])))
    first, second = outputs
    assert first["version"] == second["version"] and first["counts"] == {
        "train": 2400,
        "validation": 300,
        "test": 300,
    }
    ids = {}
    for name in ("train", "validation", "test"):
        one, two = (store.local_path(store.join(r["uri"], f"{name}.jsonl")).read_bytes() for r in outputs)
        assert one == two, f"{name} differs between 1 and 2 workers"
        ids[name] = {r["id"] for r in _lines(first, f"{name}.jsonl")}
    assert not (
        ids["train"] & ids["validation"] or ids["train"] & ids["test"] or ids["validation"] & ids["test"]
    )


def test_prepared_version_is_reused_and_changes_with_settings(tmp_path, store_root):
    _text_rows(tmp_path / "rows.jsonl", 50)
    dataset = {"name": "t", "uri": str(tmp_path / "rows.jsonl")}
    result = prepare(PrepareSpec(store_root=store_root, dataset=dataset))
    marker = store.local_path(store.join(result["uri"], "manifest.json")).stat().st_mtime_ns
    assert prepare(PrepareSpec(store_root=store_root, dataset=dataset)) == result
    assert store.local_path(store.join(result["uri"], "manifest.json")).stat().st_mtime_ns == marker
    for change in ({"seed": 7}, {"decontaminate_ngram": 8}, {"pii": "redact"}):
        assert (
            prepare(PrepareSpec(store_root=store_root, dataset={**dataset, **change}))["version"]
            != result["version"]
        )


def test_mixed_sources_follow_their_weights_in_the_training_split_only(tmp_path, store_root):
    _text_rows(tmp_path / "a.jsonl", 200, "alpha")
    _text_rows(tmp_path / "b.jsonl", 200, "beta")
    dataset = {
        "name": "mix",
        "split": "90,0,10",
        "sources": [
            {"uri": str(tmp_path / "a.jsonl"), "weight": 2},
            {"uri": str(tmp_path / "b.jsonl"), "weight": 0.5},
        ],
    }
    result = prepare(PrepareSpec(store_root=store_root, dataset=dataset))
    train = [r["id"] for r in _lines(result, "train.jsonl")]
    from_a, from_b = (sum(i.startswith(p) for i in train) for p in ("a.jsonl", "b.jsonl"))
    test = [r["id"] for r in _lines(result, "test.jsonl")]
    test_a = sum(i.startswith("a.jsonl") for i in test)
    assert from_a == 2 * (200 - test_a), "weight 2 writes every training row twice"
    assert 0.35 < from_b / (200 - (len(test) - test_a)) < 0.65, "weight 0.5 keeps about half"
    assert len(set(test)) == len(test) == 40, "evaluation rows are never resampled"
    report = store.read_json(store.join(result["uri"], "validation_report.json"))
    assert [s["weight"] for s in report["sources"]] == [2.0, 0.5] and report["rows_in"] == 400


def test_pii_is_redacted_and_counted(tmp_path, store_root):
    rows = [
        chat("Mail bob@example.org or call +1 (555) 123-4567 today.", "Done."),
        chat("Server 10.0.0.12 rejects key sk-abcdefghijklmnopqrstuvwxyz123456.", "Rotate it."),
        chat("Nothing private here.", "Good."),
    ]
    (tmp_path / "pii.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    dataset = {"name": "p", "uri": str(tmp_path / "pii.jsonl"), "split": "100,0,0", "pii": "redact"}
    result = prepare(PrepareSpec(store_root=store_root, dataset=dataset))
    text = store.local_path(store.join(result["uri"], "train.jsonl")).read_text()
    assert "bob@example.org" not in text and "10.0.0.12" not in text and "sk-abc" not in text
    assert "<EMAIL>" in text and "<PHONE>" in text and "<IP>" in text and "<API_KEY>" in text
    report = store.read_json(store.join(result["uri"], "validation_report.json"))
    assert report["pii"] == {"email": 1, "phone": 1, "ip": 1, "api_key": 1} and report["rows_dropped"] == 0


def test_dataset_card_and_histogram_are_written_with_the_splits(tmp_path, store_root, tiny_tokenizer):
    result = prepare(
        PrepareSpec(
            store_root=store_root,
            dataset={"name": "tuna", "uri": "builtin:tuna_identity"},
            tokenizers=[tiny_tokenizer],
        )
    )
    assert result["dropped"] == 0 and sum(result["counts"].values()) == 294
    directory = store.local_path(result["uri"])
    card = (directory / "README.md").read_text()
    assert "tuna" in card and "token_lengths.png" in card
    assert (directory / "token_lengths.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not (directory / "_work").exists(), "spool files are removed before the commit"
    manifest = store.read_json(store.join(result["uri"], "manifest.json"))
    assert {"README.md", "token_lengths.png", "train.jsonl", "validation_report.json"} <= set(
        manifest["files"]
    )


def test_unreadable_files_fail_the_step_with_the_file_name(tmp_path, store_root):
    (tmp_path / "broken.parquet").write_bytes(b"not parquet")
    with pytest.raises(StepError, match=r"broken\.parquet"):
        prepare(
            PrepareSpec(store_root=store_root, dataset={"name": "b", "uri": str(tmp_path / "broken.parquet")})
        )
    (tmp_path / "latin.csv").write_bytes("text\ncaf\xe9\n".encode("latin-1"))
    with pytest.raises(StepError, match="not UTF-8"):
        prepare(PrepareSpec(store_root=store_root, dataset={"name": "c", "uri": str(tmp_path / "latin.csv")}))
    with pytest.raises(StepError, match="no-such"):
        prepare(
            PrepareSpec(store_root=store_root, dataset={"name": "c", "uri": str(tmp_path / "no-such.jsonl")})
        )


def test_an_s3_glob_prepares_like_local_files(aws_env, tmp_path, store_root, monkeypatch):
    import boto3

    monkeypatch.setenv("TUNERFLOW_CACHE_DIR", str(tmp_path / "cache"))
    client = boto3.client("s3")
    client.create_bucket(Bucket="corpus")
    for part in range(3):
        body = "".join(
            json.dumps(chat(f"Question {part}-{i} about rivers?", f"Answer {i}.")) + "\n" for i in range(40)
        )
        client.put_object(Bucket="corpus", Key=f"sft/part-{part}.jsonl", Body=body.encode())
    dataset = {"name": "s3", "uri": "s3://corpus/sft/*.jsonl", "split": "80,10,10"}
    result = prepare(PrepareSpec(store_root=store_root, dataset=dataset))
    assert sum(result["counts"].values()) == 120 and result["format"] == "messages"
    ids = {r["id"] for name in ("train", "validation", "test") for r in _lines(result, f"{name}.jsonl")}
    assert "part-2.jsonl:40" in ids
    report = store.read_json(store.join(result["uri"], "validation_report.json"))
    assert report["sources"][0]["uri"] == "s3://corpus/sft/*.jsonl"


def _chat_file(path: Path, rows: list[dict]) -> str:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return str(path)


def test_an_eval_set_is_prepared_whole_as_its_test_split(tmp_path, store_root):
    rows = [chat(f"Question number {i} about the ocean tides?", f"Answer {i}.") for i in range(7)]
    dataset = {"name": "holdout", "uri": _chat_file(tmp_path / "eval.jsonl", rows)}
    result = prepare(PrepareSpec(store_root=store_root, dataset=dataset, role="eval"))
    assert result["counts"] == {"train": 0, "validation": 0, "test": 7}
    as_training = prepare(PrepareSpec(store_root=store_root, dataset=dataset))
    assert as_training["version"] != result["version"] and as_training["counts"]["train"] > 0


def test_training_rows_overlapping_a_separate_eval_set_or_fixed_questions_are_dropped(tmp_path, store_root):
    eval_rows = [chat(f"Tell me: {LEAKED}", "Evaporation."), chat("A different eval question here?", "No.")]
    eval_set = {"name": "holdout", "uri": _chat_file(tmp_path / "eval.jsonl", eval_rows)}
    question = "which famous bridge crosses the golden gate strait in the city of san francisco today"
    train = [
        chat(f"Please, {LEAKED}?", "Clouds."),  # overlaps the eval set's first prompt
        chat(f"Quick one: {question}", "The Golden Gate Bridge."),  # overlaps the fixed question
        chat("What is the capital city of France, and why?", "Paris."),
        chat("Summarise the rules of chess for a beginner.", "Checkmate wins."),
    ]
    dataset = {"name": "d", "train_uri": _chat_file(tmp_path / "train.jsonl", train), "max_drop_ratio": 0.9}
    job = PrepareSpec(
        store_root=store_root,
        dataset=dataset,
        eval_sets=[eval_set],
        eval_prompts=[EvalPrompt(id="eval_questions:0", text=question)],
    )
    result = prepare(job)
    rejected = {r["id"]: r for r in _lines(result, "rejected.jsonl")}
    assert rejected["train.jsonl:1"]["reason"] == "overlaps_eval"
    assert rejected["train.jsonl:1"]["detail"] == "shares a prompt n-gram with holdout:eval.jsonl:1"
    assert rejected["train.jsonl:2"]["detail"] == "shares a prompt n-gram with eval_questions:0"
    assert [r["id"] for r in _lines(result, "train.jsonl")] == ["train.jsonl:3", "train.jsonl:4"]
    # What the rows were checked against is part of the version: without it, a new version.
    alone = prepare(PrepareSpec(store_root=store_root, dataset=dataset))
    assert alone["version"] != result["version"] and alone["counts"]["train"] == 4


def test_prepare_commits_to_an_s3_store_and_reads_back_on_a_fresh_machine(
    tmp_path, s3_store_root, monkeypatch
):
    """The real step against moto's S3 server: outputs uploaded, manifest last, then read back through
    the store from an empty local mirror, every file checked against its sha256."""
    _text_rows(tmp_path / "rows.jsonl", 50)
    dataset = {"name": "t", "uri": str(tmp_path / "rows.jsonl")}
    result = prepare(PrepareSpec(store_root=s3_store_root, dataset=dataset))
    assert result["uri"].startswith(s3_store_root + "/") and store.is_committed(result["uri"])
    assert store.committed_result(result["uri"]) == result
    assert store.verify(result["uri"]) == []
    assert "_work" not in store.list_dir(result["uri"]), "spool files are not uploaded"
    shutil.rmtree(tmp_path / "cache")
    monkeypatch.setenv("TUNERFLOW_CACHE_DIR", str(tmp_path / "fresh-cache"))
    local = store.fetch(result["uri"])
    assert str(local).startswith(str(tmp_path / "fresh-cache"))
    rows = sum(
        len((local / f"{split}.jsonl").read_text().splitlines()) for split in ("train", "validation", "test")
    )
    assert rows == sum(result["counts"].values())
    report = store.read_json(store.join(result["uri"], "validation_report.json"))
    assert report["rows_in"] == 50
    assert prepare(PrepareSpec(store_root=s3_store_root, dataset=dataset)) == result, "committed: skipped"


def test_malformed_rows_are_dropped_with_reasons_and_the_rest_prepared(tmp_path, store_root):
    # A BOM before the first row, a row nested 100,000 deep and a line over max_row_bytes: each is a
    # reason-coded drop (or, for the BOM, nothing at all) instead of a crash or a lost first row.
    good = [chat(f"Question number {i} about the weather?", f"Answer number {i}.") for i in range(12)]
    lines = [json.dumps(row) for row in good]
    lines.insert(3, '{"messages": ' + "[" * 100_000 + "]" * 100_000 + "}")
    lines.insert(6, json.dumps(chat("A question with a very long answer?", "y" * 400_000)))
    (tmp_path / "rows.jsonl").write_bytes(b"\xef\xbb\xbf" + ("\n".join(lines) + "\n").encode())
    dataset = {
        "name": "odd",
        "uri": str(tmp_path / "rows.jsonl"),
        "max_row_bytes": 300_000,
        "split": "100,0,0",
    }
    result = prepare(PrepareSpec(store_root=store_root, dataset=dataset))
    rejected = {r["id"]: (r["reason"], r["detail"]) for r in _lines(result, "rejected.jsonl")}
    assert rejected["rows.jsonl:4"][0] == "too_deep"
    assert rejected["rows.jsonl:7"] == ("too_long", f"{len(lines[6])} bytes > max_row_bytes 300000")
    assert len(rejected) == 2 and result["counts"]["train"] == 12
    assert "rows.jsonl:1" in {r["id"] for r in _lines(result, "train.jsonl")}


def test_max_row_bytes_is_validated_and_changes_the_version_only_when_set():
    from tasks.data.parts import content_version, plan_parts

    with pytest.raises(ValueError, match="max_row_bytes 10 is outside"):
        DatasetConfig(name="d", uri="builtin:tuna_identity", max_row_bytes=10)
    specs = [
        PrepareSpec(store_root="file:///s", dataset={"name": "d", "uri": "builtin:tuna_identity", **extra})
        for extra in ({}, {"max_row_bytes": 1 << 20}, {"max_row_bytes": 1 << 21})
    ]
    versions = [content_version(plan_parts(spec.dataset), spec) for spec in specs]
    assert versions[0] == versions[1] != versions[2]


def test_rows_differing_only_in_field_edge_whitespace_are_duplicates_naming_the_first(tmp_path, store_root):
    rows = [
        chat("What is 2 plus 2?", "4"),
        chat("Name the largest planet in the solar system.", "Jupiter."),
        chat("  What is 2 plus 2? ", " 4\n"),
    ]
    dataset = {
        "name": "spaced",
        "train_uri": _chat_file(tmp_path / "train.jsonl", rows),
        "max_drop_ratio": 0.5,
    }
    result = prepare(PrepareSpec(store_root=store_root, dataset=dataset))
    assert [r["id"] for r in _lines(result, "train.jsonl")] == ["train.jsonl:1", "train.jsonl:2"]
    (dropped,) = _lines(result, "rejected.jsonl")
    assert (dropped["id"], dropped["reason"], dropped["detail"]) == (
        "train.jsonl:3",
        "duplicate",
        "same as train.jsonl:1",
    )


def test_every_check_turned_on_is_in_the_report_and_card_as_run_or_not(tmp_path, store_root, caplog):
    rows = [chat(f"Question {i} about the tides?", "An answer.") for i in range(4)]
    rows.append(chat("  Question 0 about the tides? ", "An answer."))
    dataset = {
        "name": "d",
        "uri": _chat_file(tmp_path / "rows.jsonl", rows),
        "max_tokens": 512,
        "pii": "drop",
    }
    # A job spec without tokenizers (the CLI and experiments always pass some) still prepares, but the
    # length check it could not run is said in the log and the report instead of silently missing.
    result = prepare(PrepareSpec(store_root=store_root, dataset=dataset))
    assert "max_tokens 512 not checked: no tokenizer was given" in caplog.text
    report = store.read_json(store.join(result["uri"], "validation_report.json"))
    assert report["checks"] == [
        {"name": "dedup", "ran": True, "dropped": 1, "drop_reasons": {"duplicate": 1}, "mode": "exact"},
        {"name": "max_tokens", "ran": False, "dropped": 0, "drop_reasons": {}, "setting": 512,
         "not_run_because": "no tokenizer was given to count tokens: pass --model CATALOG_NAME"},
        # 4 rows left, all drawn into train by the 90,5,5 split: nothing to compare them against.
        {"name": "decontamination", "ran": False, "dropped": 0, "drop_reasons": {}, "setting": 13,
         "not_run_because": "no validation, test or evaluation rows to compare the training rows against"},
        {"name": "pii", "ran": True, "dropped": 0, "drop_reasons": {}, "mode": "drop"},
    ]  # fmt: skip
    card = store.local_path(store.join(result["uri"], "README.md")).read_text()
    assert "## Checks" in card and "**no**: no tokenizer was given" in card


STORY = (
    "the harbour master walked along the old stone pier at dawn counting the fishing boats that had "
    "come back from the night at sea and writing their names in a small leather book"
)


def test_near_duplicates_are_dropped_naming_the_row_they_resemble(tmp_path, store_root):
    rows = [
        chat(f"Tell me a story: {STORY}.", "Done."),
        chat("Name the largest planet in the solar system.", "Jupiter."),
        chat(f"Tell me a story: {STORY.replace('small', 'little')}!", "Done."),  # one word changed
        chat(f"Tell me a story: {STORY}.", "Done."),  # exact: still `duplicate`
        chat("Which ocean lies between Africa and Australia?", "The Indian Ocean."),
    ]
    uri = _chat_file(tmp_path / "train.jsonl", rows)
    dataset = {
        "name": "near",
        "train_uri": uri,
        "dedup": "near",
        "near_dedup_threshold": 0.6,
        "max_drop_ratio": 0.5,
    }
    result = prepare(PrepareSpec(store_root=store_root, dataset=dataset))
    assert [r["id"] for r in _lines(result, "train.jsonl")] == [
        "train.jsonl:1",
        "train.jsonl:2",
        "train.jsonl:5",
    ]
    rejected = {r["id"]: r for r in _lines(result, "rejected.jsonl")}
    assert rejected["train.jsonl:4"]["reason"] == "duplicate"
    near = rejected["train.jsonl:3"]
    assert near["reason"] == "near_duplicate"
    assert near["detail"].startswith("resembles train.jsonl:1 (estimated similarity 0.")
    assert float(near["detail"].rsplit(" ", 1)[1].rstrip(")")) >= 0.6
    # A stricter threshold keeps it; exact mode never looks for near duplicates.
    strict = prepare(PrepareSpec(store_root=store_root, dataset={**dataset, "near_dedup_threshold": 0.99}))
    exact_dataset = {**dataset, "dedup": "exact"}
    del exact_dataset["near_dedup_threshold"]
    exact = prepare(PrepareSpec(store_root=store_root, dataset=exact_dataset))
    assert strict["drop_reasons"] == exact["drop_reasons"] == {"duplicate": 1}
    report = store.read_json(store.join(result["uri"], "validation_report.json"))
    (dedup,) = [check for check in report["checks"] if check["name"] == "dedup"]
    assert dedup == {
        "name": "dedup",
        "ran": True,
        "dropped": 2,
        "drop_reasons": {"duplicate": 1, "near_duplicate": 1},
        "mode": "near",
        "setting": 0.6,
    }


def test_near_dedup_keeps_the_same_rows_whatever_the_workers_and_shards(tmp_path, monkeypatch):
    words = STORY.split()
    rows = []
    for i in range(60):
        variant = list(words)
        variant[i % len(words)] = f"word{i}"  # each row one word away from the story: all near duplicates
        rows.append({"text": " ".join(variant) if i % 3 else f"unrelated row {i} " + " ".join(words[:3])})
    path = tmp_path / "rows.jsonl"
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    dataset = {
        "name": "t",
        "uri": str(path),
        "dedup": "near",
        "near_dedup_threshold": 0.6,
        "max_drop_ratio": 0.9,
    }
    outputs = []
    for workers, shard_bytes in (("1", ""), ("2", "2000")):
        monkeypatch.setenv("TUNERFLOW_DATA_WORKERS", workers)
        monkeypatch.setenv("TUNERFLOW_DATA_SHARD_BYTES", shard_bytes)
        root = (tmp_path / f"store-{workers}").as_uri()
        outputs.append(prepare(PrepareSpec(store_root=root, dataset=dataset)))
    first, second = outputs
    assert first["drop_reasons"] == second["drop_reasons"] and first["drop_reasons"]["near_duplicate"] >= 20
    one, two = (sorted(json.dumps(r) for r in _lines(result, "rejected.jsonl")) for result in outputs)
    assert one == two
