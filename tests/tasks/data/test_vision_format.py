"""Vision rows: LLaVA's and OpenAI's forms become chat rows with images; images are resolved beside the
dataset file (paths, globs) and a missing, unreadable or oversized one drops its row with a reason."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tasks.data.format_detection import detect_format
from tasks.data.formats import convert
from tasks.data.rows import RowError, normalise
from tasks.data.vision_images import resolve_images


def png(path: Path, size: tuple[int, int] = (8, 8), color=(200, 20, 20)) -> Path:
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, color).save(path)
    return path


LLAVA = {
    "image": "img/a.png",
    "conversations": [
        {"from": "human", "value": "<image>\nWhat is it?"},
        {"from": "gpt", "value": "A red square."},
    ],
}
OPENAI = {
    "messages": [
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "What is it?"},
                {"type": "image_url", "image_url": {"url": "img/a.png"}},
            ],
        },
        {"role": "assistant", "content": "A red square."},
    ]
}


def test_both_forms_become_a_vision_row():
    assert detect_format(LLAVA) == "llava" and detect_format(OPENAI) == "openai_vision"
    assert detect_format({"messages": [{"role": "user", "content": "hi"}]}) == "messages"
    assert detect_format({"conversations": []}) == "sharegpt"
    llava = convert(LLAVA, "llava")
    assert llava == {
        "messages": [
            {"role": "user", "content": "<image>\nWhat is it?"},
            {"role": "assistant", "content": "A red square."},
        ],
        "images": ["img/a.png"],
    }
    openai = convert(OPENAI, "openai_vision")
    assert openai["images"] == ["img/a.png"]
    assert openai["messages"][0]["content"] == "What is it?\n<image>"
    # Without a placeholder, LLaVA's loader puts the image first in the first human turn.
    bare = {**LLAVA, "conversations": [{"from": "human", "value": "Hi"}, {"from": "gpt", "value": "Ho"}]}
    assert convert(bare, "llava")["messages"][0]["content"] == "<image>\nHi"
    # The image is part of the row: the same question about two images is no duplicate.
    assert normalise(llava) != normalise({**llava, "images": ["img/b.png"]})


@pytest.mark.parametrize(
    ("record", "fmt", "code"),
    [
        ({**LLAVA, "image": ""}, "llava", "missing_image"),
        ({**LLAVA, "image": ["a.png", "b.png"]}, "llava", "bad_image"),  # two images, one placeholder
        ({"messages": [{"role": "user", "content": "hi"}]}, "openai_vision", "missing_image"),
        (
            {
                "messages": [
                    {"role": "user", "content": [{"type": "image_url", "image_url": {"url": "https://x"}}]}
                ]
            },
            "openai_vision",
            "bad_image",
        ),
    ],
)
def test_rows_without_usable_image_references_are_refused(record, fmt, code):
    with pytest.raises(RowError) as error:
        convert(record, fmt)
    assert error.value.code == code


def test_images_resolve_beside_the_dataset_and_bad_ones_drop_with_a_reason(tmp_path):
    png(tmp_path / "img/a.png")
    png(tmp_path / "img/many/1.png")
    png(tmp_path / "img/many/2.png")
    png(tmp_path / "img/big.png", size=(64, 64))
    (tmp_path / "img/broken.png").write_bytes(b"\x89PNG\r\n\x1a\nnot really")
    row = resolve_images(convert(LLAVA, "llava"), tmp_path)
    assert row["images"] == [(tmp_path / "img/a.png").resolve().as_uri()]
    # A glob matching two images turns its placeholder into two.
    globbed = resolve_images(convert({**LLAVA, "image": "img/many/*.png"}, "llava"), tmp_path)
    assert len(globbed["images"]) == 2 and globbed["messages"][0]["content"].count("<image>") == 2

    def code(image: str, **limits) -> str:
        with pytest.raises(RowError) as error:
            resolve_images(convert({**LLAVA, "image": image}, "llava"), tmp_path, **limits)
        return error.value.code

    assert code("img/nothing.png") == "missing_image"
    assert code("img/broken.png") == "bad_image"
    assert code("img/big.png", max_pixels=32 * 32) == "image_too_large"
    assert code("img/big.png", max_bytes=10) == "image_too_large"


def test_a_vision_dataset_prepares_with_each_dropped_row_and_its_reason(tmp_path):
    from tasks.contracts.prepare import PrepareSpec
    from tasks.data.preparation import prepare
    from tasks.storage import store

    data = tmp_path / "data"
    rows = []
    for index in range(12):
        png(data / f"img/{index}.png", color=(index * 20, 0, 0))
        rows.append({**LLAVA, "image": f"img/{index}.png"})
        rows[-1]["conversations"] = [
            {"from": "human", "value": f"<image>\nQuestion {index}?"},
            {"from": "gpt", "value": f"Answer {index}."},
        ]
    (data / "img/broken.png").write_bytes(b"nope")
    png(data / "img/huge.png", size=(200, 200))
    rows += [{**LLAVA, "image": "img/missing.png"}, {**LLAVA, "image": "img/broken.png"}]
    rows.append({**LLAVA, "image": "img/huge.png"})
    (data / "rows.jsonl").write_text("".join(json.dumps(row) + "\n" for row in rows))
    dataset = {
        "name": "pics",
        "uri": str(data / "rows.jsonl"),
        "split": "80,10,10",
        "max_image_pixels": 100 * 100,
        "max_drop_ratio": 0.5,
    }
    result = prepare(PrepareSpec(store_root=(tmp_path / "store").as_uri(), dataset=dataset))
    assert result["kind"] == "vision" and result["format"] == "llava"
    assert result["drop_reasons"] == {"missing_image": 1, "bad_image": 1, "image_too_large": 1}
    assert sum(result["counts"].values()) == 12
    train = store.local_path(store.join(result["uri"], "train.jsonl")).read_text().splitlines()
    first = json.loads(train[0])
    assert first["images"][0].startswith("file://") and Path(store.local_path(first["images"][0])).is_file()


def test_the_shipped_image_dataset_prepares(tmp_path):
    from tasks.contracts.prepare import PrepareSpec
    from tasks.data.preparation import prepare

    dataset = {"name": "tuna_images", "uri": "builtin:tuna_images", "split": "70,15,15"}
    result = prepare(PrepareSpec(store_root=(tmp_path / "store").as_uri(), dataset=dataset))
    assert result["kind"] == "vision" and result["dropped"] == 0 and sum(result["counts"].values()) == 16


def test_s3_images_resolve_through_the_store_and_load_for_training(tmp_path, s3_store_root):
    import boto3

    from tasks.training.vision_inputs import load_images

    bucket, prefix = s3_store_root.removeprefix("s3://").split("/", 1)
    client = boto3.session.Session().client("s3")
    for name in ("a.png", "b.png"):
        client.put_object(Bucket=bucket, Key=f"{prefix}/imgs/{name}", Body=png(tmp_path / name).read_bytes())
    single = resolve_images(convert({**LLAVA, "image": f"{s3_store_root}/imgs/a.png"}, "llava"), tmp_path)
    assert single["images"] == [f"{s3_store_root}/imgs/a.png"]
    globbed = resolve_images(convert({**LLAVA, "image": f"{s3_store_root}/imgs/*.png"}, "llava"), tmp_path)
    assert globbed["images"] == [f"{s3_store_root}/imgs/a.png", f"{s3_store_root}/imgs/b.png"]
    assert [image.size for image in load_images(globbed["images"])] == [(8, 8), (8, 8)]
    with pytest.raises(RowError) as error:
        resolve_images(convert({**LLAVA, "image": f"{s3_store_root}/imgs/none.png"}, "llava"), tmp_path)
    assert error.value.code == "missing_image"
