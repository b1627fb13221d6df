"""Calibration loaders on small files in the published C4 and C-Eval formats (local, s3:// through a real
S3 API, hf: save_to_disk directories), the hub path's offline message, and the token windows."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tasks.config.export import CalibrationConfig
from tasks.exporting.calibration import CalibrationError, load_texts, windows

REPO = Path(__file__).resolve().parents[3]
FIXTURES = REPO / "tests" / "fixtures" / "calibration"
C4_FILES = ["en/c4-train.00000-of-01024.json.gz", "en/c4-validation.00000-of-00008.json.gz"]


def config(dataset: str, **values) -> CalibrationConfig:
    return CalibrationConfig(dataset=dataset, **values)


def test_c4_shards_in_a_directory_are_read_as_gzip_json_lines(tmp_path):
    loaded = load_texts(config(str(FIXTURES / "c4")), cache_dir=tmp_path)
    assert loaded.format == "c4"
    assert loaded.files == C4_FILES
    assert len(loaded.texts) == 6
    assert loaded.texts[0].startswith("The Denver Board")  # the train shard sorts first
    assert any("Missoula" in text for text in loaded.texts)


def test_a_plain_jsonl_file_in_c4_format_is_read(tmp_path):
    loaded = load_texts(config(str(FIXTURES / "c4-plain.jsonl"), format="c4"), cache_dir=tmp_path)
    assert loaded.format == "c4" and len(loaded.texts) == 3
    assert loaded.texts[1].startswith("Discussion in 'Mac OS X Lion")


def test_ceval_subject_csvs_become_questions_with_their_options(tmp_path):
    loaded = load_texts(config(str(FIXTURES / "ceval")), cache_dir=tmp_path)
    assert loaded.format == "ceval"
    assert sorted(loaded.files) == [
        "dev/computer_network_dev.csv",
        "test/computer_network_test.csv",
        "val/computer_network_val.csv",
        "val/high_school_physics_val.csv",
    ]
    assert len(loaded.texts) == 7  # 1 dev + 1 test (no answer column) + 3 + 2 val rows
    assert "下列哪一种协议属于传输层协议____\nA. IP\nB. TCP\nC. ARP\nD. ICMP" in loaded.texts
    assert all(text.count("\n") == 4 for text in loaded.texts)


def test_ceval_subjects_and_globs_select_files(tmp_path):
    physics = load_texts(
        config(str(FIXTURES / "ceval"), subjects=["high_school_physics"]), cache_dir=tmp_path
    )
    assert len(physics.texts) == 2 and "光在真空中的传播速度约为____" in physics.texts[1]
    val = load_texts(config(str(FIXTURES / "ceval" / "val" / "*.csv")), cache_dir=tmp_path)
    assert val.files == ["computer_network_val.csv", "high_school_physics_val.csv"]
    assert len(val.texts) == 5


def test_s3_c4_and_ceval_files_are_downloaded_and_read(aws_env, tmp_path):
    import boto3

    client = boto3.session.Session().client("s3")
    client.create_bucket(Bucket="calibration")
    for path in FIXTURES.rglob("*"):
        if path.is_file():
            client.upload_file(str(path), "calibration", f"sets/{path.relative_to(FIXTURES).as_posix()}")
    c4 = load_texts(config("s3://calibration/sets/c4/en/"), cache_dir=tmp_path)
    assert c4.format == "c4" and len(c4.texts) == 6
    assert c4.files == [name.removeprefix("en/") for name in C4_FILES]  # keys under the given prefix
    assert (
        tmp_path / "s3" / "calibration" / "sets" / "c4" / "en" / "c4-train.00000-of-01024.json.gz"
    ).is_file()
    ceval = load_texts(config("s3://calibration/sets/ceval/val/*.csv"), cache_dir=tmp_path)
    assert ceval.format == "ceval" and len(ceval.texts) == 5
    with pytest.raises(CalibrationError, match=r"calibration.dataset: .*no object in bucket 'calibration'"):
        load_texts(config("s3://calibration/missing/*.json.gz"), cache_dir=tmp_path)


def test_a_save_to_disk_directory_in_ceval_format_is_read_through_hf(tmp_path):
    import datasets

    rows = {
        "id": [0, 1],
        "question": ["中国的首都是____", "一年有____个月"],
        "A": ["上海", "10"],
        "B": ["北京", "11"],
        "C": ["广州", "12"],
        "D": ["深圳", "13"],
        "answer": ["B", "C"],
        "explanation": ["", ""],
    }
    datasets.Dataset.from_dict(rows).save_to_disk(str(tmp_path / "saved"))
    loaded = load_texts(config(f"hf:{tmp_path / 'saved'}"), cache_dir=tmp_path / "cache")
    assert loaded.format == "ceval"
    assert loaded.texts == [
        "中国的首都是____\nA. 上海\nB. 北京\nC. 广州\nD. 深圳",
        "一年有____个月\nA. 10\nB. 11\nC. 12\nD. 13",
    ]


def test_the_hub_sets_say_what_to_do_when_no_hub_is_reachable(tmp_path):
    """The real hub path, with the hub clients told they are offline (as on a machine without internet)."""
    code = (
        "from tasks.exporting.calibration import load_texts, CalibrationError\n"
        "from tasks.config.export import CalibrationConfig\n"
        "for name in ('c4', 'ceval'):\n"
        "    try:\n"
        "        load_texts(CalibrationConfig(dataset=name))\n"
        "    except CalibrationError as error:\n"
        "        print(error)\n"
    )
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "HF_HOME": str(tmp_path)}
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, env=env, capture_output=True, text=True, timeout=120
    )
    lines = done.stdout.strip().splitlines()
    assert len(lines) == 2, done.stdout + done.stderr[-2000:]
    assert "calibration.dataset 'c4': could not load allenai/c4 from the Hugging Face Hub" in lines[0]
    assert "download a C4 shard (e.g. en/c4-validation.00000-of-00008.json.gz)" in lines[0]
    assert "calibration.dataset 'ceval': could not load ceval/ceval-exam" in lines[1]
    assert "local path or s3:// URI" in lines[1]


def test_rows_in_neither_format_are_refused_with_the_file_and_line(tmp_path):
    bad = tmp_path / "c4-bad.jsonl"
    bad.write_text(json.dumps({"text": "fine"}) + "\n" + json.dumps({"body": "no text column"}) + "\n")
    with pytest.raises(CalibrationError, match=r"c4-bad.jsonl:2: a C4 row needs a `text` string"):
        load_texts(config(str(bad)), cache_dir=tmp_path)
    other = tmp_path / "other.jsonl"
    other.write_text(json.dumps({"body": "x"}) + "\n")
    with pytest.raises(CalibrationError, match=r"other.jsonl:1: neither C4 .* nor C-Eval"):
        load_texts(config(str(other)), cache_dir=tmp_path)
    with pytest.raises(CalibrationError, match="no file found"):
        load_texts(config(str(tmp_path / "nothing-here" / "*.json.gz")), cache_dir=tmp_path)
    with pytest.raises(CalibrationError, match="unsupported scheme"):
        load_texts(config("gs://bucket/c4.json.gz"), cache_dir=tmp_path)


def test_the_experiment_set_renders_chat_rows_with_the_template(tiny_model_dir, tmp_path):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    messages = [{"role": "user", "content": "Who are you?"}, {"role": "assistant", "content": "Tuna."}]
    (tmp_path / "train.jsonl").write_text(json.dumps({"id": "1", "messages": messages}) + "\n")
    dataset = {"name": "tuna", "uri": tmp_path.as_uri(), "counts": {"train": 1}}
    loaded = load_texts(config("experiment"), dataset=dataset, tokenizer=tokenizer)
    assert loaded.texts == [
        "<|im_start|>user\nWho are you?<|im_end|>\n<|im_start|>assistant\nTuna.<|im_end|>\n"
    ]
    assert loaded.source == "tuna@train"
    with pytest.raises(CalibrationError, match="no prepared dataset was given"):
        load_texts(config("experiment"), tokenizer=tokenizer)


def test_preference_and_unpaired_rows_calibrate_as_their_prompt_and_answer(tiny_model_dir):
    from transformers import AutoTokenizer

    from tasks.exporting.calibration import row_text

    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    prompt = [{"role": "user", "content": "Who are you?"}]
    good, bad = [{"role": "assistant", "content": "Tuna."}], [{"role": "assistant", "content": "A fish."}]
    expected = "<|im_start|>user\nWho are you?<|im_end|>\n<|im_start|>assistant\nTuna.<|im_end|>\n"
    assert row_text({"prompt": prompt, "chosen": good, "rejected": bad}, tokenizer) == expected
    assert row_text({"prompt": prompt, "completion": good, "label": True}, tokenizer) == expected
    # Without a chat template: the turns' text, never the Python repr of the message lists.
    assert row_text({"prompt": prompt, "chosen": good, "rejected": bad}, None) == "Who are you?\nTuna."


def test_windows_are_seeded_full_length_and_counted(tiny_model_dir, tmp_path):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    texts = load_texts(config(str(FIXTURES / "c4")), cache_dir=tmp_path).texts
    first = windows(texts, tokenizer, count=5, seq_length=16, seed=3)
    assert len(first) == 5 and all(len(window) == 16 for window in first)
    assert windows(texts, tokenizer, count=5, seq_length=16, seed=3) == first
    assert windows(texts, tokenizer, count=5, seq_length=16, seed=4) != first
    # More windows than the texts hold: as many full ones as there are.
    total = sum(len(tokenizer(t, add_special_tokens=False)["input_ids"]) + 1 for t in texts)
    assert len(windows(texts, tokenizer, count=10_000, seq_length=16, seed=3)) == total // 16
    # Fewer tokens than one window: one shorter window rather than none.
    short = windows(["Hi there."], tokenizer, count=4, seq_length=512, seed=0)
    assert len(short) == 1 and 0 < len(short[0]) < 512


def test_a_gzip_bomb_a_corrupt_gzip_and_deep_nesting_are_refused_naming_the_file(tmp_path, monkeypatch):
    import gzip

    from tasks.exporting import calibration_files

    # A bomb with no newline: refused at the line cap. One of blank lines: refused at the inflation cap.
    monkeypatch.setattr(calibration_files, "MAX_LINE_BYTES", 1 << 16)
    monkeypatch.setattr(calibration_files, "MAX_DECOMPRESSED_BYTES", 1 << 20)
    cases = {
        "zeros.json.gz": (gzip.compress(b"0" * (8 << 20)), "longer than"),
        "blank.json.gz": (gzip.compress(b"\n" * (8 << 20)), "inflates to more than"),
        "cut.json.gz": (
            gzip.compress(b"".join(b'{"text": "%d"}\n' % i for i in range(9999)))[:999],
            "not readable",
        ),
        "deep.jsonl": (b'{"text": ' + b"[" * 20_000 + b"]" * 20_000 + b"}\n", "nested too deep"),
    }
    for name, (data, message) in cases.items():
        (tmp_path / name).write_bytes(data)
        with pytest.raises(CalibrationError, match=rf"{name.replace('.', '[.]')}.*{message}"):
            load_texts(config(str(tmp_path / name), format="c4"), cache_dir=tmp_path / "cache")


def test_a_bom_before_the_first_c4_line_is_skipped(tmp_path):
    path = tmp_path / "bom.jsonl"
    path.write_bytes(b"\xef\xbb\xbf" + b'{"text": "first document"}\n{"text": "second"}\n')
    assert load_texts(config(str(path)), cache_dir=tmp_path).texts == ["first document", "second"]
