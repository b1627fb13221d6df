"""The train step reads each image of a vision row once: the length probe that drops rows over
max_seq_length counts image tokens from the processor's rule (and the sizes the prepare step kept), and only
the collator opens and decodes the images."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

from tasks.data.formats import convert
from tasks.data.vision_images import resolve_images
from tests.fixtures.tiny_llava import build_tiny_llava, write_images
from tests.tasks.training.test_train_types import make_job, trainer_for, write_dataset


@pytest.fixture(scope="module")
def llava(tmp_path_factory) -> dict:
    base = tmp_path_factory.mktemp("llava")
    model = build_tiny_llava(base / "model")
    rows = [resolve_images(convert(row, "llava"), base) for row in write_images(base / "images")]
    return {"model": model, "rows": rows, "data": write_dataset(base / "data", rows)}


@pytest.fixture
def opened(monkeypatch) -> Counter:
    """Every PIL.Image.open, by file name (the project's load_images and any header read go through it)."""
    from PIL import Image

    counts: Counter = Counter()
    real_open = Image.open

    def counting_open(fp, *args, **kwargs):
        counts[Path(fp).name if isinstance(fp, str | Path) else repr(fp)] += 1
        return real_open(fp, *args, **kwargs)

    monkeypatch.setattr(Image, "open", counting_open)
    return counts


def test_the_probe_counts_what_the_processor_makes_without_opening_an_image(llava, opened):
    from tasks.training.image_tokens import fixed_count
    from tasks.training.vision_inputs import encode_row, fitting_rows, load_processor, probe_length

    processor = load_processor(str(llava["model"]))
    assert fixed_count(processor) == 16
    old = {key: value for key, value in llava["rows"][0].items() if key != "image_sizes"}  # prepared before
    rows = [*llava["rows"], old]
    probed = [probe_length(processor, row, fixed_count(processor)) for row in rows]
    assert fitting_rows(processor, rows, 64, "train") == rows
    assert not opened, opened  # the tiny LLaVA's count is fixed: no size needed, no image touched
    # Where the size decides and the row has none, only the file's header is read for it.
    assert probe_length(processor, old) == probed[-1] and opened == Counter({"red_square.png": 1})
    opened.clear()
    encoded = [encode_row(processor, row) for row in rows]
    for (length, has_answer), item in zip(probed, encoded, strict=True):
        assert length == len(item["input_ids"]) and has_answer
    print("probe lengths", [length for length, _ in probed])
    # A max_seq_length between the rows' lengths keeps exactly the rows that fit.
    cut = sorted(length for length, _ in probed)[len(rows) // 2]
    kept = fitting_rows(processor, rows, cut, "train")
    assert kept == [row for row, (length, _) in zip(rows, probed, strict=True) if length <= cut]
    assert 0 < len(kept) < len(rows)


def test_one_epoch_of_the_train_step_opens_each_image_once(llava, tmp_path, opened):
    hp = {"max_steps": 2, "batch_size": 4, "micro_batch_size": 4, "max_seq_length": 64}
    job = make_job(tmp_path, llava["model"], llava["data"], "vision", "vlm_sft", "lora", **hp)
    trainer, _ = trainer_for(job, tmp_path)  # builds the trainer: the length probe runs on every row
    assert not opened, opened
    batches = list(trainer.get_train_dataloader())
    names = [Path(uri).name for row in llava["rows"] for uri in row["images"]]
    print("batches", len(batches), "opens", dict(opened))
    assert len(batches) == 2 and sum(len(b["input_ids"]) for b in batches) == len(names) == 8
    assert opened == Counter(names)  # every image once, in the collator


def test_a_processor_that_does_not_say_its_image_count_is_measured_with_its_images(llava, opened):
    from tasks.training.vision_inputs import fitting_rows, load_processor

    processor = load_processor(str(llava["model"]))
    processor._get_num_multimodal_tokens = None  # as an older or custom processor without it
    assert fitting_rows(processor, llava["rows"], 64, "train") == llava["rows"]
    assert sum(opened.values()) == len(llava["rows"])  # the fallback reads each row's image to measure it
