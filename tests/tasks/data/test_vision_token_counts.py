"""Prepare-time token counts of vision rows include the tokens each image becomes in the model (the tiny
LLaVA: (32 / 8)^2 = 16 per image), so a row whose text fits `max_tokens` but whose text and image tokens do
not is dropped at prepare, and the card's lengths are the lengths the model sees."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest

from tasks.config.catalog import CatalogEntry
from tasks.data.formats import convert
from tasks.data.token_counts import TokenCounter, prepare_tokenizers
from tasks.data.vision_images import resolve_images
from tests.fixtures.tiny_llava import IMAGE_SIZE, PATCH, build_tiny_llava, write_images

PER_IMAGE = (IMAGE_SIZE // PATCH) ** 2  # LLaVA's `default` strategy drops the CLS token it adds


@pytest.fixture(scope="module")
def llava(tmp_path_factory) -> dict:
    base = tmp_path_factory.mktemp("llava")
    model = build_tiny_llava(base / "model")
    entry = CatalogEntry(name="tiny-llava", source={"path": str(model)}, kind="uri")
    return {"base": base, "model": model, "entry": entry, "records": write_images(base / "images")}


def long_record(record: dict) -> dict:
    question = "<image>\n" + " ".join(["Which colour is the shape Tuna sees there?"] * 4)
    return {**record, "conversations": [{"from": "human", "value": question}, record["conversations"][1]]}


def test_counts_add_the_image_tokens_the_processor_expands_each_image_to(llava, tmp_path):
    from tasks.training.vision_inputs import encode_row, load_processor

    specs = prepare_tokenizers([llava["entry"]], "file:///unused", tmp_path)
    assert specs[0].images is not None and specs[0].images.per_image == PER_IMAGE
    records = [*llava["records"][:4], long_record(llava["records"][0])]
    rows = [resolve_images(convert(record, "llava"), llava["base"]) for record in records]
    counted = TokenCounter(specs).count(rows)["tiny-llava"].tolist()
    text_only = TokenCounter([replace(specs[0], images=None)]).count(rows)["tiny-llava"].tolist()
    # Each image's placeholder was one token of the text; it becomes PER_IMAGE tokens.
    assert [c - t for c, t in zip(counted, text_only, strict=True)] == [PER_IMAGE - 1] * 5
    processor = load_processor(str(llava["model"]), llava["entry"])
    for row, count in zip(rows, counted, strict=True):
        exact = len(encode_row(processor, row)["input_ids"])  # what the model is fed, images expanded
        print("counted", count, "processor", exact)
        assert abs(count - exact) <= len(row["messages"]), (count, exact)


def test_a_row_too_long_only_with_its_image_tokens_is_dropped_at_prepare(llava, tmp_path):
    from tasks.contracts.prepare import PrepareSpec
    from tasks.data.preparation import prepare
    from tasks.storage import store

    records = [*llava["records"], long_record(llava["records"][0])]
    specs = prepare_tokenizers([llava["entry"]], "file:///unused", tmp_path)
    rows = [resolve_images(convert(record, "llava"), llava["base"]) for record in records]
    counts = TokenCounter(specs).count(rows)["tiny-llava"].tolist()
    long_count, short_counts = counts[-1], counts[:-1]
    # Its text alone (the count less the image's tokens, one of which was its placeholder) fits.
    max_tokens = long_count - 1
    assert long_count - (PER_IMAGE - 1) <= max_tokens and max(short_counts) <= max_tokens
    data = tmp_path / "data"
    data.mkdir()
    (data / "rows.jsonl").write_text("".join(json.dumps(record) + "\n" for record in records))
    dataset = {
        "name": "pics",
        "uri": str(data / "rows.jsonl"),
        "split": "80,10,10",
        "max_tokens": max_tokens,
        "max_drop_ratio": 0.5,
    }
    spec = PrepareSpec(store_root=(tmp_path / "store").as_uri(), dataset=dataset, tokenizers=[llava["entry"]])
    result = prepare(spec)
    print("prepared", result["counts"], result["drop_reasons"], "max_tokens", max_tokens, "counts", counts)
    assert result["drop_reasons"] == {"too_long": 1} and sum(result["counts"].values()) == 8
    out = store.local_path(result["uri"])
    rejected = [json.loads(line) for line in (out / "rejected.jsonl").read_text().splitlines()]
    assert [r["reason"] for r in rejected] == ["too_long"]
    assert f"{long_count} tokens with tiny-llava > {max_tokens}" in rejected[0]["detail"]
    report = json.loads((out / "validation_report.json").read_text())
    lengths = report["token_lengths"]["tiny-llava"]
    # The card's lengths are the kept rows' counts with their image tokens.
    assert (lengths["min"], lengths["max"], lengths["count"]) == (min(short_counts), max(short_counts), 8)
    assert lengths["min"] > PER_IMAGE and report["image_tokens"] == {"tiny-llava": PER_IMAGE}
    card = (out / "README.md").read_text()
    assert f"per image: `tiny-llava`: {PER_IMAGE}" in card
    kept = [json.loads(line) for split in ("train", "validation", "test") for line in _lines(out, split)]
    assert all(row["image_sizes"] == [[IMAGE_SIZE, IMAGE_SIZE]] for row in kept)


def _lines(out: Path, split: str) -> list[str]:
    path = out / f"{split}.jsonl"
    return path.read_text().splitlines() if path.exists() else []
