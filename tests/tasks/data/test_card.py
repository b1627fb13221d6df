"""The dataset card: counts, reasons and sources without row text, a real PNG, and front matter that
`datasets.load_dataset` follows to exactly the non-empty splits."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import yaml

from tasks.data.card import front_matter, reason_meaning, size_category, write_card
from tasks.data.length_stats import LengthHistogram

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
SECRET = "the quick zebra recites 42 sonnets"  # row text that must never reach the card


def _rows(n: int, start: int = 0) -> list[dict]:
    return [
        {
            "id": f"r{i}",
            "messages": [
                {"role": "user", "content": f"{SECRET} #{i}"},
                {"role": "assistant", "content": "ok"},
            ],
        }
        for i in range(start, start + n)
    ]


def _write_splits(directory: Path, counts: dict[str, int]) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    start = 0
    for split, n in counts.items():
        lines = [json.dumps(row) + "\n" for row in _rows(n, start)]
        (directory / f"{split}.jsonl").write_text("".join(lines))
        start += n
    # Files the loader must not pick up as data.
    (directory / "rejected.jsonl").write_text(json.dumps({"id": "x", "reason": "duplicate"}) + "\n")
    (directory / "validation_report.json").write_text(json.dumps({"rows_in": 99}))


def _hist(lengths) -> dict:
    hist = LengthHistogram()
    hist.add(lengths)
    return hist.to_dict()


def _stats(counts: dict[str, int], token_lengths: dict | None = None) -> dict:
    rng = np.random.default_rng(3)
    return {
        "name": "support-chat",
        "version": "0123abcd4567ef89",
        "format": "sharegpt",
        "kind": "chat",
        "created_at": "2025-05-01T12:00:00+00:00",
        "sources": [
            {
                "uri": "s3://bucket/chats/*.jsonl",
                "fingerprint": "sha256:aaaa1111",
                "rows_in": 80,
                "weight": 1.0,
            },
            {"uri": "builtin:alpaca-mini", "fingerprint": "sha256:bbbb2222", "rows_in": 40, "weight": 0.5},
        ],
        "counts": counts,
        "rows_in": 120,
        "rows_dropped": 17,
        "drop_reasons": {"duplicate": 9, "too_long": 4, "filter:profanity": 3, "lang_mismatch": 1},
        "pii": {"email": 5, "phone": 2},
        "pii_mode": "redact",
        "settings": {
            "split": "80,10,10",
            "seed": 42,
            "min_tokens": 4,
            "max_tokens": 2048,
            "dedup": True,
            "decontaminate_ngram": 13,
            "filters": ["profanity"],
        },
        "token_lengths": token_lengths
        if token_lengths is not None
        else {
            "SmolLM2-135M": _hist(rng.lognormal(5, 1, 500).astype(int) + 4),
            "Qwen2.5-0.5B": _hist(rng.lognormal(4.8, 1, 500).astype(int) + 4),
        },
    }


def _front_matter(text: str) -> dict:
    assert text.startswith("---\n")
    meta, _, _ = text[4:].partition("\n---\n")
    return yaml.safe_load(meta)


@pytest.fixture
def hf_cache(tmp_path, monkeypatch) -> Path:
    """Point every Hugging Face cache at tmp_path, also for a datasets module imported earlier."""
    cache = tmp_path / "hf"
    monkeypatch.setenv("HF_HOME", str(cache))
    monkeypatch.setenv("HF_DATASETS_CACHE", str(cache / "datasets"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    import datasets.config

    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", cache / "datasets")
    monkeypatch.setattr(datasets.config, "HF_MODULES_CACHE", cache / "modules")
    monkeypatch.setattr(datasets.config, "DOWNLOADED_DATASETS_PATH", cache / "datasets" / "downloads")
    monkeypatch.setattr(datasets.config, "EXTRACTED_DATASETS_PATH", cache / "datasets" / "downloads" / "x")
    return cache


def test_card_holds_counts_reasons_sources_and_no_row_text(tmp_path):
    directory = tmp_path / "v1"
    counts = {"train": 80, "validation": 13, "test": 10}
    _write_splits(directory, counts)
    written = write_card(directory, _stats(counts))
    assert written == ["README.md", "token_lengths.png"]
    text = (directory / "README.md").read_text()

    assert SECRET not in text and "sonnets" not in text
    assert "# support-chat (version 0123abcd4567ef89)" in text
    for line in ("| train | 80 |", "| validation | 13 |", "| test | 10 |", "**103**"):
        assert line in text
    assert "120 rows read, 17 dropped (14.2%), 103 kept." in text
    for source in ("s3://bucket/chats/*.jsonl", "sha256:aaaa1111", "builtin:alpaca-mini", "sha256:bbbb2222"):
        assert source in text
    assert "| 0.5 |" in text
    assert "| `duplicate` | 9 | same content as an earlier row" in text
    assert "| `too_long` | 4 | more tokens than max_tokens" in text
    assert "| `filter:profanity` | 3 | rejected by the data-plugin filter `profanity`" in text
    assert "| `lang_mismatch` | 1 | reported by a data plugin" in text
    assert text.index("`duplicate`") < text.index("`too_long`") < text.index("`filter:profanity`")
    assert "Mode: `redact`" in text and "| `email` | 5 |" in text and "| `phone` | 2 |" in text
    assert "| `max_tokens` | 2,048 |" in text and "| `filters` | `profanity` |" in text
    assert "| Tokenizer | Rows | Mean | Min | p50 | p90 | p99 | Max |" in text
    assert "| `SmolLM2-135M` | 500 |" in text and "| `Qwen2.5-0.5B` | 500 |" in text
    assert "![token lengths](token_lengths.png)" in text
    assert f'load_dataset("{directory}")' in text


def test_png_is_a_real_small_png(tmp_path):
    directory = tmp_path / "v1"
    write_card(directory, _stats({"train": 8, "validation": 1, "test": 1}))
    data = (directory / "token_lengths.png").read_bytes()
    assert data[:8] == PNG_MAGIC
    assert 5_000 < len(data) < 300_000
    width, height = int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")
    assert (width, height) == (900, 500)  # figsize 9x5 at dpi 100


def test_front_matter_parses_and_lists_only_nonempty_splits(tmp_path):
    directory = tmp_path / "v1"
    write_card(directory, _stats({"train": 1500, "validation": 0, "test": 20}))
    meta = _front_matter((directory / "README.md").read_text())
    assert meta["pretty_name"] == "support-chat 0123abcd4567ef89"
    assert meta["size_categories"] == ["1K<n<10K"]
    assert meta["tags"] == ["tunerflow", "chat", "sharegpt"]
    assert meta["configs"] == [
        {
            "config_name": "default",
            "data_files": [
                {"split": "train", "path": "train.jsonl"},
                {"split": "test", "path": "test.jsonl"},
            ],
        }
    ]


def test_size_categories_follow_hugging_face_buckets():
    assert size_category(0) == "n<1K"
    assert size_category(999) == "n<1K"
    assert size_category(1000) == "1K<n<10K"
    assert size_category(250_000) == "100K<n<1M"
    assert size_category(10**13) == "n>1T"


def test_no_token_lengths_means_no_png(tmp_path):
    directory = tmp_path / "v1"
    directory.mkdir()
    (directory / "token_lengths.png").write_bytes(b"stale")
    stats = _stats({"train": 3, "validation": 0, "test": 0}, token_lengths={})
    assert write_card(directory, stats) == ["README.md"]
    assert not (directory / "token_lengths.png").exists()
    text = (directory / "README.md").read_text()
    assert "Token lengths were not counted." in text and "token_lengths.png" not in text
    # An empty histogram counts as none too.
    assert write_card(
        directory, _stats({"train": 3}, token_lengths={"tok": LengthHistogram().to_dict()})
    ) == ["README.md"]


def test_sparse_stats_still_render(tmp_path):
    written = write_card(tmp_path, {"name": "bare", "version": "v0"})
    assert written == ["README.md"]
    text = (tmp_path / "README.md").read_text()
    meta = _front_matter(text)
    assert "configs" not in meta and meta["size_categories"] == ["n<1K"]
    assert "No row was dropped." in text and "Every split is empty" in text


def test_markdown_table_is_not_broken_by_pipes(tmp_path):
    stats = _stats({"train": 2}, token_lengths={})
    stats["sources"] = [{"uri": "data/a|b.jsonl", "fingerprint": "f", "rows_in": 2, "weight": 1}]
    write_card(tmp_path, stats)
    assert "`data/a\\|b.jsonl`" in (tmp_path / "README.md").read_text()


def test_known_reason_codes_all_have_meanings():
    codes = [
        "not_utf8",
        "unparseable",
        "missing_field",
        "empty_field",
        "bad_type",
        "bad_role",
        "bad_role_order",
        "too_short",
        "too_long",
        "duplicate",
        "overlaps_eval",
        "pii",
    ]
    for code in codes:
        assert reason_meaning(code) != reason_meaning("some_plugin_code")
    assert "`toxic`" in reason_meaning("filter:toxic")


def test_front_matter_without_rows_has_no_configs():
    assert "configs" not in front_matter({"name": "n", "version": "v", "counts": {"train": 0}})


def test_load_dataset_reads_exactly_the_nonempty_splits(tmp_path, hf_cache):
    import datasets

    directory = tmp_path / "store" / "support-chat" / "0123abcd4567ef89"
    counts = {"train": 7, "validation": 0, "test": 3}
    _write_splits(directory, counts)
    write_card(directory, _stats(counts))
    loaded = datasets.load_dataset(str(directory), cache_dir=str(hf_cache / "datasets"))
    assert set(loaded) == {"train", "test"}
    assert loaded["train"].num_rows == 7 and loaded["test"].num_rows == 3
    assert loaded["train"][0]["id"] == "r0"
    assert set(loaded["train"].column_names) == {"id", "messages"}
    assert hf_cache.exists()
