"""The images of vision rows at prepare time: each reference resolved to URIs (a path relative to the
dataset file, an absolute path, a glob, `file://` or `s3://`, all read through `tasks.storage.store`) and
each image checked, so that a row the trainer could not load is dropped here with its reason:
`missing_image` (nothing at the reference), `bad_image` (Pillow cannot open or verify it) or
`image_too_large` (over the dataset's `max_image_bytes` or `max_image_pixels`). The sizes the check reads
are kept in the row (`image_sizes`), so no later step decodes an image to learn its size.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tasks.config.dataset import MAX_IMAGE_BYTES as DEFAULT_MAX_IMAGE_BYTES
from tasks.config.dataset import MAX_IMAGE_PIXELS as DEFAULT_MAX_IMAGE_PIXELS
from tasks.data.rows import RowError
from tasks.data.vision_format import IMAGE_TOKEN
from tasks.storage import store


def _pattern(reference: str, base_dir: Path) -> str:
    """The store URI or path pattern a reference names (relative paths are below the dataset file)."""
    if "://" in reference:
        return reference
    path = Path(reference).expanduser()
    return str(path if path.is_absolute() else base_dir / path)


def _found(reference: str, base_dir: Path) -> list[tuple[str, Path]]:
    """(URI, local file) of each image a reference names, in name order."""
    pattern = _pattern(reference, base_dir)
    try:
        copies = store.located_copies(pattern)
    except (OSError, ValueError, NotImplementedError, store.StoreError) as error:
        raise RowError("missing_image", f"{reference}: {type(error).__name__}: {error}") from None
    files = sorted((uri, path) for uri, path in copies if path.is_file())
    if not files:
        raise RowError("missing_image", f"{reference}: no such file")
    return files


def check_image(path: Path, reference: str, max_bytes: int, max_pixels: int) -> tuple[int, int]:
    """The image's (width, height); RowError unless the file is an image Pillow reads whole, within the
    limits."""
    # Pillow is needed only when a dataset holds images.
    from PIL import Image, UnidentifiedImageError

    size = path.stat().st_size
    if size > max_bytes:
        raise RowError("image_too_large", f"{reference}: {size} bytes, over max_image_bytes {max_bytes}")
    try:
        with Image.open(path) as image:
            width, height = image.size
            if width * height > max_pixels:
                raise RowError(
                    "image_too_large",
                    f"{reference}: {width}x{height} pixels, over max_image_pixels {max_pixels}",
                )
            image.verify()
        with Image.open(path) as image:
            image.load()  # verify() does not decode the pixels: a truncated file fails only here
    except RowError:
        raise
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, Image.DecompressionBombError) as error:
        raise RowError("bad_image", f"{reference}: {type(error).__name__}: {error}") from None
    return width, height


def resolve_images(
    row: dict[str, Any],
    base_dir: Path,
    max_bytes: int = DEFAULT_MAX_IMAGE_BYTES,
    max_pixels: int = DEFAULT_MAX_IMAGE_PIXELS,
) -> dict[str, Any]:
    """The vision row with its references replaced by the URIs of checked images, and `image_sizes` (each
    one's [width, height], for the image tokens a size-dependent model gives it); a glob matching k
    images turns its placeholder into k placeholders."""
    uris: list[str] = []
    sizes: list[list[int]] = []
    counts: list[int] = []
    for reference in row["images"]:
        found = _found(reference, base_dir)
        sizes += [list(check_image(path, reference, max_bytes, max_pixels)) for _, path in found]
        uris += [uri for uri, _ in found]
        counts.append(len(found))
    messages = []
    placeholder = 0
    for message in row["messages"]:
        pieces = message["content"].split(IMAGE_TOKEN)
        content = pieces[0]
        for piece in pieces[1:]:
            content += "\n".join([IMAGE_TOKEN] * counts[placeholder]) + piece
            placeholder += 1
        messages.append({**message, "content": content})
    return {**row, "messages": messages, "images": uris, "image_sizes": sizes}
