"""How many tokens each image of a vision row becomes in a vision-language model, read from the model's own
processor (transformers' `_get_num_multimodal_tokens`, the count its `__call__` expands `<image>` to):
LLaVA-style processors give every image the same count ((image_size / patch_size)^2, less the CLS token the
`default` feature-select strategy drops), Qwen2-VL-style ones a count from the image's pixel size.

The prepare step counts a row's tokens with it (for `max_tokens` and the card's lengths) and the train
step's length probe does too, so neither decodes an image to know how long a row is. The sizes are the
ones the prepare step's image check read (`image_sizes` of a prepared row, `[width, height]` per image).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

from tasks.config.catalog import CatalogEntry, pretrained_kwargs
from tasks.runtime.errors import StepError
from tasks.storage import store
from tasks.training.base_models import weights_location

PLACEHOLDER = "<image>"  # as in the prepared rows (tasks.data.vision_format)
# Sizes (width, height) that tell a count fixed per image from one that follows the image's size.
PROBE_SIZES = ((224, 224), (336, 512), (1000, 640), (57, 913))


def image_text(processor: Any) -> str:
    """What a `<image>` placeholder becomes in the model's own prompt (before the processor expands its
    image token into the image's run of tokens)."""
    token = getattr(processor, "image_token", None) or PLACEHOLDER
    vocab = processor.tokenizer.get_vocab()
    if "<|vision_start|>" in vocab and token == "<|image_pad|>":  # Qwen2-VL wraps each image
        return f"<|vision_start|>{token}<|vision_end|>"
    return token


def image_token_id(processor: Any) -> int:
    token = getattr(processor, "image_token", None) or PLACEHOLDER
    return processor.tokenizer.convert_tokens_to_ids(token)


def tokens_per_image(processor: Any, sizes: Sequence[Sequence[int]]) -> list[int]:
    """The image tokens each image of `sizes` ([width, height] each) becomes under this processor."""
    count = getattr(processor, "_get_num_multimodal_tokens", None)
    if count is not None:
        # transformers asks (height, width); PIL and the prepared rows say (width, height).
        return [int(n) for n in count(image_sizes=[(int(h), int(w)) for w, h in sizes]).num_image_tokens]
    fixed = getattr(processor, "num_image_tokens", None) or getattr(processor, "image_seq_length", None)
    if fixed:
        return [int(fixed)] * len(sizes)
    raise StepError(
        f"{type(processor).__name__} does not say how many tokens an image becomes "
        "(no _get_num_multimodal_tokens, num_image_tokens or image_seq_length)"
    )


@dataclass(frozen=True)
class ImageTokens:
    """What a row's images add to the count of its text, where each `<image>` placeholder was counted as
    the tokens of the text `<image>`. Picklable: the prepare step's worker processes count with it.

    `per_image`: the tokens every image becomes, or -1 where the image's size decides (then the saved
    processor in `processor_dir` is asked per size). `markup`: the tokens of the model's image markup (its
    one image token, and Qwen2-VL's vision start/end around it) less the tokens the text `<image>` was
    counted as; each image then adds `markup - 1` plus its image tokens.
    """

    per_image: int
    markup: int
    processor_dir: str = ""

    def per_image_shown(self) -> int | str:
        """The tokens per image as the log and the dataset card say it."""
        return self.per_image if self.per_image >= 0 else "by image size"

    def added(self, sizes: Sequence[Sequence[int]] | None, count: int) -> int:
        """Tokens `count` images of these sizes add (sizes may be None where the count is fixed)."""
        if not count:
            return 0
        if self.per_image >= 0:
            per = [self.per_image] * count
        elif sizes is None or len(sizes) != count:
            raise ValueError("this model's image tokens depend on each image's size, and the row has none")
        else:
            per = [_sized_count(self.processor_dir, int(w), int(h)) for w, h in sizes]
        return sum(per) + count * (self.markup - 1)


def fixed_count(processor: Any) -> int | None:
    """The image tokens every image becomes under this processor, or None where the size decides."""
    counts = set(tokens_per_image(processor, PROBE_SIZES))
    return counts.pop() if len(counts) == 1 else None


def image_tokens(processor: Any, processor_dir: str = "") -> ImageTokens:
    """The processor's rule; `processor_dir` is where it is saved, needed when the size decides."""
    tokenizer = processor.tokenizer

    def length(text: str) -> int:
        return len(tokenizer(text, add_special_tokens=False)["input_ids"])

    markup = length(image_text(processor)) - length(PLACEHOLDER)
    fixed = fixed_count(processor)
    if fixed is not None:
        return ImageTokens(fixed, markup)
    if not processor_dir:
        raise ValueError("the image token count depends on the image size: give the processor's directory")
    return ImageTokens(-1, markup, processor_dir)


def model_image_tokens(entry: CatalogEntry, store_root: str, save_dir: Path) -> ImageTokens:
    """The rule of a vision model, from its processor; a size-deciding processor is saved in `save_dir`
    for the worker processes to load."""
    from transformers import AutoProcessor

    processor = AutoProcessor.from_pretrained(weights_location(entry, store_root), **pretrained_kwargs(entry))
    rule = image_tokens(processor, str(save_dir))
    if rule.per_image < 0:
        processor.save_pretrained(save_dir)
    return rule


@lru_cache(maxsize=4)
def _processor(path: str) -> Any:
    from transformers import AutoProcessor

    return AutoProcessor.from_pretrained(path)


@lru_cache(maxsize=65536)
def _sized_count(path: str, width: int, height: int) -> int:
    return tokens_per_image(_processor(path), [(width, height)])[0]


def image_sizes(row: dict[str, Any]) -> list[list[int]]:
    """[width, height] of each of the row's images: as the prepare step read them, else from each file's
    header (a dataset prepared before the sizes were kept); the pixels are not decoded."""
    sizes = row.get("image_sizes")
    if sizes is not None and len(sizes) == len(row["images"]):
        return [list(size) for size in sizes]
    # Pillow is needed only by the vision models.
    from PIL import Image

    found = []
    for uri in row["images"]:
        with Image.open(store.fetch_file(uri)) as image:  # reads the header only
            found.append(list(image.size))
    return found
