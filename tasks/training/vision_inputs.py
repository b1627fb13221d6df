"""A vision-language model's inputs: its processor and weights loaded, a prepared vision row's images read
through the store, the row tokenized with the processor (one run of image tokens per `<image>`
placeholder) and labelled on its assistant answers only, batches collated, and answers generated for
scoring. Shared by the vision training types (`tasks.training.vision_types`) and the evaluate step.

The answer masks come from the tokenizer's character offsets on the rendered conversation, as for text
SFT (`tasks.training.chat_spans`); the processor's expanded ids are then walked beside the plain ones,
each placeholder token standing for the run of image tokens it became, which holds for processors that
expand in place (LLaVA's fixed count, Qwen2-VL's count per image grid).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from typing import Any

from tasks.config.catalog import CatalogEntry, pretrained_kwargs
from tasks.runtime.errors import StepError
from tasks.storage import store
from tasks.training.base_models import weights_location
from tasks.training.chat_spans import assistant_spans, ensure_chat_template
from tasks.training.image_tokens import (
    PLACEHOLDER,
    fixed_count,
    image_sizes,
    image_text,
    image_token_id,
    tokens_per_image,
)

log = logging.getLogger("tunerflow.train")


def load_processor(path: str, entry: CatalogEntry | None = None) -> Any:
    """The model's processor (tokenizer and image processor), with a chat template."""
    from transformers import AutoProcessor

    kwargs = pretrained_kwargs(entry) if entry is not None else {}
    try:
        processor = AutoProcessor.from_pretrained(path, **kwargs)
    except ImportError as error:  # e.g. Qwen2-VL's processor builds a video processor needing torchvision
        name = entry.name if entry is not None else path
        raise StepError(
            f"the processor of model '{name}' needs a package this trainer image lacks: {error}"
        ) from None
    tokenizer = processor.tokenizer
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    if entry is not None:
        ensure_chat_template(tokenizer, entry)
    elif not tokenizer.chat_template and getattr(processor, "chat_template", None):
        tokenizer.chat_template = processor.chat_template
    return processor


def load_vision_model(entry: CatalogEntry, store_root: str, dtype: Any = None) -> Any:
    """The base image-text-to-text model (LLaVA, Qwen2-VL, ...)."""
    from transformers import AutoModelForImageTextToText

    kwargs = {**pretrained_kwargs(entry), **({"dtype": dtype} if dtype is not None else {})}
    return AutoModelForImageTextToText.from_pretrained(weights_location(entry, store_root), **kwargs)


def _model_messages(processor: Any, messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    text = image_text(processor)
    return [{**m, "content": m["content"].replace(PLACEHOLDER, text)} for m in messages]


def load_images(uris: Sequence[str]) -> list[Any]:
    """The row's images as RGB PIL images (a remote one through the store's verified local copy)."""
    # Pillow is needed only by the vision models.
    from PIL import Image

    images = []
    for uri in uris:
        with Image.open(store.fetch_file(uri)) as image:
            images.append(image.convert("RGB"))
    return images


def _plain(processor: Any, row: dict[str, Any]) -> tuple[str, list[int], list[bool]]:
    """(the rendered conversation, its tokens with one image token per image, whether each is in an
    answer): the row as text, no image read."""
    tokenizer = processor.tokenizer
    text, spans = assistant_spans(tokenizer, _model_messages(processor, row["messages"]))
    plain = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
    answer = [any(start <= begin < stop for start, stop in spans) for begin, _ in plain["offset_mapping"]]
    return text, plain["input_ids"], answer


def encode_row(processor: Any, row: dict[str, Any]) -> dict[str, Any]:
    """One vision row as the model's inputs: `input_ids`, `labels` (-100 off the answers and on image
    tokens), `pixel_values` and whatever else the processor returns per image (`image_grid_thw`). Each
    image is read (and decoded) here once."""
    text, plain_ids, answer = _plain(processor, row)
    encoded = processor(
        text=[text], images=load_images(row["images"]), return_tensors="pt", add_special_tokens=False
    )
    ids = encoded["input_ids"][0].tolist()
    image_id = image_token_id(processor)
    labels: list[int] = []
    at = 0
    for token, in_answer in zip(plain_ids, answer, strict=True):
        if token == image_id:
            start = at
            while at < len(ids) and ids[at] == image_id:
                at += 1
            labels += [-100] * (at - start)
            continue
        if at >= len(ids) or ids[at] != token:
            raise ValueError("the processor changed tokens other than the image placeholders")
        labels.append(token if in_answer else -100)
        at += 1
    if at != len(ids):
        raise ValueError("the processor added tokens the tokenizer did not produce")
    extra = {k: v for k, v in encoded.items() if k not in ("input_ids", "attention_mask", "token_type_ids")}
    return {"input_ids": ids, "labels": labels, **extra}


class VisionCollator:
    """Rows to a right-padded batch; images are read and processed here, a batch at a time (holding every
    image's pixels for the whole dataset would not fit)."""

    def __init__(self, processor: Any, max_length: int | None):
        self.processor = processor
        self.max_length = max_length

    def __call__(self, rows: list[dict[str, Any]]) -> dict[str, Any]:
        import torch

        items = []
        for row in rows:
            try:
                items.append(encode_row(self.processor, row))
            except ValueError as error:
                raise StepError(f"row {row.get('id', '?')}: {error}") from None
        pad = self.processor.tokenizer.pad_token_id
        width = max(len(item["input_ids"]) for item in items)
        batch: dict[str, Any] = {
            "input_ids": torch.tensor(
                [i["input_ids"] + [pad] * (width - len(i["input_ids"])) for i in items]
            ),
            "attention_mask": torch.tensor(
                [[1] * len(i["input_ids"]) + [0] * (width - len(i["input_ids"])) for i in items]
            ),
            "labels": torch.tensor([i["labels"] + [-100] * (width - len(i["labels"])) for i in items]),
        }
        for key in items[0]:
            if key not in batch:
                batch[key] = torch.cat([item[key] for item in items])
        return batch


def probe_length(processor: Any, row: dict[str, Any], per_image: int | None = None) -> tuple[int, bool]:
    """(the row's token count, image tokens included; whether it holds an answer token), from its text and
    `per_image` (`image_tokens.fixed_count`), else the image sizes the prepare step read: no image is
    decoded (the collator decodes each one, once)."""
    _, ids, answer = _plain(processor, row)
    image_id = image_token_id(processor)
    shown = ids.count(image_id)
    if shown != len(row["images"]):
        raise ValueError(f"{shown} image token(s) in the text for {len(row['images'])} image(s)")
    if per_image is not None:
        counts = [per_image] * shown
    else:
        counts = tokens_per_image(processor, image_sizes(row)) if shown else []
    has_answer = any(flag and token != image_id for token, flag in zip(ids, answer, strict=True))
    return len(ids) - shown + sum(counts), has_answer


def fitting_rows(
    processor: Any, rows: list[dict[str, Any]], max_length: int, split: str
) -> list[dict[str, Any]]:
    """The rows whose tokens (image tokens included) fit `max_length` and hold an answer token. A longer
    row is dropped, not cut: a cut through its image tokens cannot be fed to the model. The prepare step
    already drops rows over the dataset's max_tokens with their image tokens counted; this is the guard
    for a max_seq_length below it."""
    kept = []
    try:
        per_image, counted = fixed_count(processor), True
    except StepError as error:  # a processor that does not say its count: measure each row, images read
        log.warning("%s: %s; each row's length is measured with its images", split, error)
        per_image, counted = None, False
    for index, row in enumerate(rows):
        try:
            if counted:
                length, has_answer = probe_length(processor, row, per_image)
            else:
                item = encode_row(processor, row)
                length, has_answer = len(item["input_ids"]), any(x != -100 for x in item["labels"])
        except ValueError as error:
            raise StepError(f"{split} row {index} ({row.get('id', '?')}): {error}") from None
        if length <= max_length and has_answer:
            kept.append(row)
    if rows and not kept:
        raise StepError(
            f"{split}: no vision row fits max_seq_length {max_length} with its image tokens; "
            "raise max_seq_length"
        )
    if len(kept) < len(rows):
        log.warning(
            "%s: %d vision rows are longer than max_seq_length, left out", split, len(rows) - len(kept)
        )
    return kept


def generate_answers(
    model: Any,
    processor: Any,
    rows: Sequence[dict[str, Any]],
    max_new_tokens: int,
    sampling: dict[str, Any] | None = None,
) -> tuple[list[str], dict[str, float]]:
    """Answers to each vision row's prompt (its turns up to the last assistant one, with its images),
    one row at a time, and throughput as `tasks.scoring.generation.generate` reports it."""
    import torch

    tokenizer = processor.tokenizer
    sampling = sampling or {"do_sample": False}
    answers, generated = [], 0
    started = time.perf_counter()
    for row in rows:
        messages = _model_messages(processor, row["messages"][:-1])
        prompt = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        shown = sum(m["content"].count(PLACEHOLDER) for m in row["messages"][:-1])
        inputs = processor(
            text=[prompt],
            images=load_images(row["images"][:shown]),
            return_tensors="pt",
            add_special_tokens=False,
            return_token_type_ids=False,
        ).to(getattr(model, "device", "cpu"))
        with torch.inference_mode():
            output = model.generate(
                **inputs,
                max_new_tokens=max_new_tokens,
                **sampling,
                pad_token_id=tokenizer.pad_token_id,
                eos_token_id=tokenizer.eos_token_id,
            )
        new_tokens = output[0, inputs["input_ids"].shape[1] :]
        generated += int((new_tokens != tokenizer.pad_token_id).sum())
        answers.append(tokenizer.decode(new_tokens, skip_special_tokens=True).strip())
    elapsed = time.perf_counter() - started
    stats = {
        "generated_tokens": generated,
        "seconds": round(elapsed, 3),
        "tokens_per_s": round(generated / max(elapsed, 1e-9), 2),
    }
    return answers, stats


def answer_loss(model: Any, processor: Any, rows: Sequence[dict[str, Any]]) -> float:
    """Mean cross-entropy over the answer tokens of vision rows (the vlm_sft objective), one row a pass."""
    import torch

    collate = VisionCollator(processor, None)
    total, count = 0.0, 0
    for row in rows:
        batch = collate([row])
        answer_tokens = int((batch["labels"][:, 1:] != -100).sum())
        if not answer_tokens:
            continue
        with torch.inference_mode():
            loss = model(**{k: v.to(getattr(model, "device", "cpu")) for k, v in batch.items()}).loss
        total += float(loss) * answer_tokens
        count += answer_tokens
    return total / max(count, 1)
