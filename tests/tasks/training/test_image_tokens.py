"""Image token counts of a model whose count follows the image's size, from its processor and the sizes the
prepare step read: the prepare step's counter (in a worker, from the saved processor) and the train step's
length probe both give what the processor really expands each image to, without opening an image.

The tiny processor here is Pixtral's (its image processor needs no torchvision, unlike Qwen2-VL's video
processor), over the tiny Llama's tokenizer: a 32x32 image is 20 tokens, a 64x32 one 40."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from tasks.config.catalog import CatalogEntry
from tasks.data.token_counts import TokenCounter, prepare_tokenizers
from tasks.training.image_tokens import fixed_count, image_tokens, tokens_per_image

SIZES = ((32, 32), (64, 32), (16, 48))  # (width, height)


@pytest.fixture(scope="module")
def pixtral(tiny_model_dir, tmp_path_factory) -> dict:
    from PIL import Image
    from transformers import AutoTokenizer, PixtralImageProcessor, PixtralProcessor

    base = tmp_path_factory.mktemp("pixtral")
    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    tokenizer.add_special_tokens({"additional_special_tokens": ["[IMG]", "[IMG_BREAK]", "[IMG_END]"]})
    images = PixtralImageProcessor(size={"longest_edge": 64}, patch_size=8)
    processor = PixtralProcessor(images, tokenizer, patch_size=8, spatial_merge_size=1)
    processor.save_pretrained(base / "processor")
    rows = []
    for width, height in SIZES:
        path = base / f"{width}x{height}.png"
        Image.new("RGB", (width, height), (200, 30, 30)).save(path)
        messages = [
            {"role": "user", "content": "<image>\nWhat is in the picture?"},
            {"role": "assistant", "content": "A red rectangle."},
        ]
        rows.append({"messages": messages, "images": [path.as_uri()], "image_sizes": [[width, height]]})
    return {"processor": processor, "dir": base / "processor", "rows": rows, "tokenizer_dir": tiny_model_dir}


def expanded_length(processor, row) -> int:
    """What the processor feeds the model for the row: its rendered chat, each image expanded."""
    from PIL import Image

    messages = [{**m, "content": m["content"].replace("<image>", "[IMG]")} for m in row["messages"]]
    text = processor.tokenizer.apply_chat_template(messages, tokenize=False)
    images = [Image.open(Path(uri.removeprefix("file://"))).convert("RGB") for uri in row["images"]]
    encoded = processor(text=[text], images=images, add_special_tokens=False)
    return len(encoded["input_ids"][0])


def test_the_rule_follows_the_image_size(pixtral):
    processor = pixtral["processor"]
    assert fixed_count(processor) is None
    assert tokens_per_image(processor, SIZES) == [20, 36, 18]
    with pytest.raises(ValueError, match="depends on the image size"):
        image_tokens(processor)


def test_prepare_counts_and_the_train_probe_match_the_processor_without_opening_images(
    pixtral, tmp_path, monkeypatch
):
    from PIL import Image

    from tasks.training.vision_inputs import probe_length

    processor, rows = pixtral["processor"], pixtral["rows"]
    exact = [expanded_length(processor, row) for row in rows]
    opened: list[str] = []
    real_open = Image.open
    monkeypatch.setattr(Image, "open", lambda fp, *a, **k: opened.append(str(fp)) or real_open(fp, *a, **k))

    rule = image_tokens(processor, str(pixtral["dir"]))
    assert rule.per_image == -1 and rule.processor_dir == str(pixtral["dir"])
    entry = CatalogEntry(name="tiny", source={"path": str(pixtral["tokenizer_dir"])}, kind="uri")
    (spec,) = prepare_tokenizers([entry], "file:///unused", tmp_path)
    # The counter loads the saved processor, as a worker process does, and asks it per image size.
    counted = TokenCounter([replace(spec, images=rule)]).count(rows)["tiny"].tolist()
    probed = [probe_length(processor, row)[0] for row in rows]
    print("processor", exact, "prepare count", counted, "train probe", probed)
    assert probed == exact
    for count, length, row in zip(counted, exact, rows, strict=True):
        assert abs(count - length) <= len(row["messages"]), (count, length)
    # The sizes make the difference: 16 more tokens for the 64x32 image than the 32x32 one.
    assert counted[1] - counted[0] == exact[1] - exact[0] == 16
    assert opened == []  # the sizes came from the rows, as the prepare step's image check read them


def test_llava_1_5s_processor_settings_give_576_tokens_per_image(tiny_model_dir):
    """llava-hf/llava-1.5-7b-hf's processor_config: CLIP at 336 px, 14 px patches, one extra (CLS) token
    that the `default` strategy drops: (336 / 14)^2 = 576, whatever the image's size."""
    from transformers import AutoTokenizer, CLIPImageProcessor, LlavaProcessor

    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    tokenizer.add_special_tokens({"additional_special_tokens": ["<image>"]})
    images = CLIPImageProcessor(size={"shortest_edge": 336}, crop_size={"height": 336, "width": 336})
    strategy = {"vision_feature_select_strategy": "default", "num_additional_image_tokens": 1}
    processor = LlavaProcessor(images, tokenizer, patch_size=14, **strategy)
    rule = image_tokens(processor)
    assert fixed_count(processor) == 576 and (rule.per_image, rule.markup) == (576, 0)
    assert rule.added(None, 2) == 2 * 575  # each placeholder, one token of the text, becomes 576
