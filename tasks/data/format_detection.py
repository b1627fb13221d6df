"""Which format a source row is in, from its keys: data plugin detectors first, then the built-in
formats' signatures, then the catch-alls guanaco and text. Stdlib only.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from tasks.data import plugins as data_plugins
from tasks.data.chat_formats import GUANACO_MARKER
from tasks.data.formats import apply_columns
from tasks.data.vision_format import has_image_parts

# Structured formats, in the order they are checked; a row matching more than one is ambiguous.
SIGNATURES: tuple[tuple[str, Callable[[dict[str, Any]], bool]], ...] = (
    ("preference", lambda r: "chosen" in r and "rejected" in r),
    ("openai_preference", lambda r: "preferred_output" in r and "non_preferred_output" in r),
    ("unpaired", lambda r: "completion" in r and "label" in r),
    ("openai_vision", lambda r: "messages" in r and has_image_parts(r)),
    ("messages", lambda r: "messages" in r and not has_image_parts(r)),
    ("llava", lambda r: "conversations" in r and "image" in r),
    ("sharegpt", lambda r: "conversations" in r and "image" not in r),
    ("moss", lambda r: "chat" in r),
    ("alpaca", lambda r: "instruction" in r or "output" in r),
)


def _plugin_matches(record: dict[str, Any]) -> list[str]:
    matches = []
    for plugin in data_plugins.format_plugins():
        if plugin.detect is None:
            continue
        try:
            found = plugin.detect(record)
        except Exception as error:
            raise ValueError(
                f"the detector of format plugin '{plugin.name}' failed on keys {sorted(record)}: "
                f"{type(error).__name__}: {error}; fix the plugin or set `format`"
            ) from error
        if found:
            matches.append(plugin.name)
    return matches


def _ambiguous(matches: list[str], record: dict[str, Any]) -> ValueError:
    return ValueError(
        f"the rows match several formats ({', '.join(matches)}) from keys {sorted(record)}; "
        f"set `format` to the one they are in"
    )


def detect_format(record: dict[str, Any], columns: dict[str, str] | None = None) -> str:
    """The format of a row from its keys (after `columns`). Checked in this order:

    1. data plugin detectors, in registration order; two plugins matching is ambiguous. They come first
       because a plugin is written for one dataset and is narrower than the built-in key checks (a
       Dolly row also has alpaca's `instruction`); a plugin match wins over the built-ins below.
    2. preference (`chosen` and `rejected`), openai_preference (`preferred_output` and
       `non_preferred_output`: OpenAI's DPO rows), unpaired (`completion` and `label`: KTO's rows),
       openai_vision (`messages` with an `image_url` part), messages (`messages`), llava
       (`conversations` and `image`), sharegpt (`conversations`), moss
       (`chat`), alpaca (`instruction` or `output`); a row matching two of these is ambiguous.
    3. Only when nothing above matches, the catch-alls: guanaco (`text` holding '### Human:'), then
       text (`text`)."""
    record = apply_columns(record, columns)
    matches = _plugin_matches(record)
    if not matches:
        matches = [name for name, matches in SIGNATURES if matches(record)]
    if len(matches) > 1:
        raise _ambiguous(matches, record)
    if matches:
        return matches[0]
    if "text" in record:
        text = record["text"]
        return "guanaco" if isinstance(text, str) and GUANACO_MARKER.search(text) else "text"
    raise ValueError(
        f"cannot detect the format from keys {sorted(record)}; set `format` to one of "
        f"{', '.join(data_plugins.format_names())}, and `columns` to map your column names to its keys"
    )
