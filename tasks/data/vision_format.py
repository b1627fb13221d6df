"""The built-in vision formats: LLaVA's `{"image", "conversations"}` rows and OpenAI's messages with image
parts, each a converter `record -> {"messages": [...], "images": [ref, ...]}` (kind `vision`). Stdlib only:
the image references are resolved and the images checked by `tasks.data.vision_images` in the scan.

An internal vision row is a chat row whose user turns hold one `<image>` placeholder per image, in the
order of `images`; each image reference is, as converted, what the source row says (a path relative to the
dataset file, an absolute path, a glob, `file://` or `s3://`), and, as prepared, the resolved URIs.
"""

from __future__ import annotations

from typing import Any

from tasks.data.chat_formats import convert_messages, convert_sharegpt
from tasks.data.fields import structured_field
from tasks.data.rows import RowError

IMAGE_TOKEN = "<image>"
LLAVA_KEYS = ("image", "conversations", "system")
OPENAI_VISION_KEYS = ("messages",)


def _references(record: dict[str, Any], key: str) -> list[str]:
    value = record.get(key)
    if value is None or value == "" or value == []:
        raise RowError("missing_image", f"{key} is empty: a vision row needs an image")
    values = value if isinstance(value, list) else [value]
    if not all(isinstance(item, str) and item.strip() for item in values):
        raise RowError("bad_type", f"{key} must be a path or URI, or a list of them")
    return [item.strip() for item in values]


def _check_placeholders(messages: list[dict[str, Any]], images: list[str]) -> dict[str, Any]:
    count = sum(m["content"].count(IMAGE_TOKEN) for m in messages)
    if count != len(images):
        raise RowError(
            "bad_image",
            f"{count} {IMAGE_TOKEN} placeholder(s) for {len(images)} image(s); give one per image",
        )
    if any(IMAGE_TOKEN in m["content"] for m in messages if m["role"] != "user"):
        raise RowError("bad_image", f"{IMAGE_TOKEN} may appear only in user turns")
    return {"messages": messages, "images": images}


def convert_llava(record: dict[str, Any]) -> dict[str, Any]:
    """LLaVA's rows: `image` (one reference or a list) and `conversations` as ShareGPT (`from` human/gpt),
    with an `<image>` placeholder per image in the human turns; without any, the placeholders are put at
    the start of the first human turn (as LLaVA's own loader does)."""
    images = _references(record, "image")
    messages = convert_sharegpt({key: record[key] for key in ("conversations", "system") if key in record})[
        "messages"
    ]
    if not any(IMAGE_TOKEN in m["content"] for m in messages):
        first = next((m for m in messages if m["role"] == "user"), None)
        if first is None:
            raise RowError("bad_role_order", "conversations has no human turn for the image")
        first["content"] = "\n".join([IMAGE_TOKEN] * len(images) + [first["content"]])
    return _check_placeholders(messages, images)


def _part_text(turn: int, index: int, part: Any) -> tuple[str, str | None]:
    """(text, image reference or None) of one content part."""
    where = f"messages[{turn}].content[{index}]"
    if not isinstance(part, dict):
        raise RowError("bad_type", f"{where} is {type(part).__name__}, expected an object")
    kind = part.get("type")
    if kind == "text":
        text = part.get("text")
        if not isinstance(text, str):
            raise RowError("bad_type", f"{where}.text must be a string")
        return text, None
    if kind == "image_url":
        image = part.get("image_url")
        url = image.get("url") if isinstance(image, dict) else image
        if not isinstance(url, str) or not url.strip():
            raise RowError("missing_image", f"{where}.image_url.url is empty")
        if url.startswith(("http://", "https://", "data:")):
            raise RowError(
                "bad_image",
                f"{where}: {url.split(':')[0]} image URLs are not fetched; give a path, file:// or s3:// URI",
            )
        return IMAGE_TOKEN, url.strip()
    raise RowError("bad_type", f"{where}.type is {kind!r}; expected text or image_url")


def convert_openai_vision(record: dict[str, Any]) -> dict[str, Any]:
    """OpenAI's chat rows with image parts: a user turn's `content` may be a list of `{"type": "text",
    "text"}` and `{"type": "image_url", "image_url": {"url"}}` parts; each image part becomes an `<image>`
    placeholder at its place in the text (parts joined by newlines)."""
    messages, images = [], []
    for turn_index, turn in enumerate(structured_field(record, "messages", list)):
        if isinstance(turn, dict) and isinstance(turn.get("content"), list):
            texts = []
            for index, part in enumerate(turn["content"]):
                text, url = _part_text(turn_index, index, part)
                texts.append(text)
                if url is not None:
                    images.append(url)
            turn = {**turn, "content": "\n".join(text for text in texts if text)}
        messages.append(turn)
    if not images:
        raise RowError("missing_image", "no image_url part in messages: a vision row needs an image")
    return _check_placeholders(convert_messages({"messages": messages})["messages"], images)


def has_image_parts(record: dict[str, Any]) -> bool:
    """Whether a `messages` row holds an image part (format detection: openai_vision, not messages)."""
    messages = record.get("messages")
    if not isinstance(messages, list):
        return False
    return any(
        isinstance(turn, dict)
        and isinstance(turn.get("content"), list)
        and any(isinstance(part, dict) and part.get("type") == "image_url" for part in turn["content"])
        for turn in messages
    )


def check_vision_row(row: dict[str, Any]) -> dict[str, Any]:
    """Only the shape the vision converters produce: chat messages and one image reference per
    placeholder (a plugin's rows of kind vision are held to it)."""
    messages = convert_messages({"messages": row.get("messages")})["messages"]
    return _check_placeholders(messages, _references(row, "images"))
