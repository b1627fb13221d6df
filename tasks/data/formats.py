"""One converter per dataset format, from a source row to the internal schema. Stdlib only.

Every converter is `(record, columns) -> row` and raises `tasks.data.rows.RowError(code, detail)` for a row
that cannot be used. Reason codes: `missing_field`, `empty_field`, `bad_type`, `bad_role`,
`bad_role_order`; for formats added by data plugins (`tasks.data.plugins`) also the plugin's own codes,
`bad_plugin_output` (the plugin returned a row that is not of its kind's shape) and `plugin_error` (the
plugin raised something other than RowError). Internal rows (the `id` is added by the caller):

- chat: `{"messages": [{"role", "content"}, ...]}`; roles system (first turn only), user, assistant,
  tool (after an assistant turn). An assistant turn that calls tools has `tool_calls`
  (`[{"type": "function", "function": {"name", "arguments"}}]`) and may have empty content.
- text: `{"text": str}`.
- preference: `{"prompt": [messages], "chosen": [assistant messages], "rejected": [assistant messages]}`.
- unpaired (KTO): `{"prompt": [messages], "completion": [assistant messages], "label": bool}`.
- vision: a chat row with images, `{"messages": [...], "images": [ref, ...]}`: the user turns hold one
  `<image>` placeholder per image, in the order of `images`. Converted from LLaVA's
  `{"image", "conversations"}` (format `llava`) or OpenAI's messages with `image_url` parts (format
  `openai_vision`) by `tasks.data.vision_format`; the scan resolves each reference (a path relative to
  the dataset file, a glob, `file://`, `s3://`) to URIs and drops a row whose image is missing
  (`missing_image`), unreadable (`bad_image`) or over the size limits (`image_too_large`).

The converters are in `tasks.data.chat_formats` and `tasks.data.preference_format`, the field readers
they share in `tasks.data.fields`, format detection in `tasks.data.format_detection`.

`columns` maps the format's expected key to the source key holding it, e.g.
`{"instruction": "question", "output": "answer"}`; it is applied before conversion.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from tasks.data import plugins as data_plugins
from tasks.data.chat_formats import (
    convert_alpaca,
    convert_guanaco,
    convert_messages,
    convert_moss,
    convert_sharegpt,
)
from tasks.data.fields import text_field
from tasks.data.plugin_registry import BUILTIN_FORMATS as FORMATS
from tasks.data.preference_format import (
    OPENAI_PREFERENCE_KEYS,
    PREFERENCE_KEYS,
    UNPAIRED_KEYS,
    check_preference_row,
    check_unpaired_row,
    convert_openai_preference,
    convert_preference,
    convert_unpaired,
)
from tasks.data.rows import RowError
from tasks.data.vision_format import (
    LLAVA_KEYS,
    OPENAI_VISION_KEYS,
    check_vision_row,
    convert_llava,
    convert_openai_vision,
)

# Keys each format reads, so a `columns` mapping naming anything else is refused as a typo.
EXPECTED_KEYS = {
    "alpaca": ("instruction", "input", "output", "system", "history"),
    "sharegpt": ("conversations", "system"),
    "moss": ("chat", "meta_instruction"),
    "guanaco": ("text",),
    "messages": ("messages",),
    "text": ("text",),
    "preference": ("prompt", "chosen", "rejected", "system"),
    "openai_preference": OPENAI_PREFERENCE_KEYS,
    "unpaired": ("prompt", "completion", "label", "system"),
    "llava": LLAVA_KEYS,
    "openai_vision": OPENAI_VISION_KEYS,
}
KNOWN_KEYS = frozenset(key for keys in EXPECTED_KEYS.values() for key in keys)


def check_columns(columns: dict[str, str]) -> None:
    """ValueError when a mapping names a key no format (built-in or plugin) reads, or maps two keys from
    one column."""
    known = KNOWN_KEYS
    if set(columns) - known:  # plugins are loaded only for keys the built-in formats do not read
        known = known | {key for plugin in data_plugins.format_plugins() for key in plugin.keys}
    unknown = set(columns) - known
    if unknown:
        raise ValueError(
            f"columns maps unknown keys {sorted(unknown)}; the keys are the format's own "
            f"({', '.join(sorted(known))}) and the values the source column names"
        )
    sources = list(columns.values())
    repeated = sorted({s for s in sources if sources.count(s) > 1})
    if repeated:
        raise ValueError(f"columns maps several keys from the same source column {repeated}")


def apply_columns(record: dict[str, Any], columns: dict[str, str] | None) -> dict[str, Any]:
    """The row with each mapped source key renamed to the format's key (unmapped keys kept)."""
    if not columns:
        return record
    sources = set(columns.values())
    renamed = {key: value for key, value in record.items() if key not in sources}
    for expected, source in columns.items():
        if source in record:
            renamed[expected] = record[source]
        else:
            renamed.pop(expected, None)  # the mapped column is what counts, not a same-named one
    return renamed


def convert_text(record: dict[str, Any]) -> dict[str, Any]:
    """`{"text"}`: raw text for pretraining."""
    return {"text": text_field(record, "text")}


CONVERTERS: dict[str, Callable[[dict[str, Any]], dict[str, Any]]] = {
    "alpaca": convert_alpaca,
    "sharegpt": convert_sharegpt,
    "moss": convert_moss,
    "guanaco": convert_guanaco,
    "messages": convert_messages,
    "text": convert_text,
    "preference": convert_preference,
    "openai_preference": convert_openai_preference,
    "unpaired": convert_unpaired,
    "llava": convert_llava,
    "openai_vision": convert_openai_vision,
}

# Per kind: the keys an internal row has, and the check that normalises it the way built-in rows are
# (an internal chat or text row is itself a valid `messages` or `text` record).
OUTPUT_CHECKS: dict[str, tuple[frozenset[str], Callable[[dict[str, Any]], dict[str, Any]]]] = {
    "chat": (frozenset({"messages"}), convert_messages),
    "text": (frozenset({"text"}), convert_text),
    "preference": (frozenset(PREFERENCE_KEYS), check_preference_row),
    "unpaired": (frozenset(UNPAIRED_KEYS), check_unpaired_row),
    "vision": (frozenset({"messages", "images"}), check_vision_row),
}


def _checked_converter(plugin: data_plugins.FormatPlugin) -> Callable[[dict[str, Any]], dict[str, Any]]:
    """The plugin's converter, held to the shape of its kind so a buggy plugin cannot emit rows that
    break training; its own RowErrors pass through unchanged."""
    keys, check = OUTPUT_CHECKS[plugin.kind]
    where = f"format plugin '{plugin.name}'"

    def run(record: dict[str, Any]) -> dict[str, Any]:
        try:
            row = plugin.convert(record)
        except RowError:
            raise
        except Exception as error:  # a plugin tripping over an odd record drops that row, not the step
            raise RowError("plugin_error", f"{where} raised {type(error).__name__}: {error}") from error
        if not isinstance(row, dict) or set(row) != keys:
            got = sorted(row) if isinstance(row, dict) else type(row).__name__
            expected = f"a {plugin.kind} row has exactly {sorted(keys)}"
            raise RowError("bad_plugin_output", f"{where} returned {got}; {expected}")
        try:
            return check(row)
        except RowError as error:
            detail = f"{where} returned a bad {plugin.kind} row: {error}"
            raise RowError("bad_plugin_output", detail) from None

    return run


# fmt -> (registry generation, converter): the converter is called once per row, the lookup done once.
_PLUGIN_CONVERTERS: dict[str, tuple[int, Callable[[dict[str, Any]], dict[str, Any]]]] = {}


def _plugin_converter(fmt: str) -> Callable[[dict[str, Any]], dict[str, Any]]:
    cached = _PLUGIN_CONVERTERS.get(fmt)
    if cached is not None and cached[0] == data_plugins.generation():
        return cached[1]
    converter = _checked_converter(data_plugins.get_format(fmt))  # ValueError naming the known formats
    _PLUGIN_CONVERTERS[fmt] = (data_plugins.generation(), converter)
    return converter


def convert(record: Any, fmt: str, columns: dict[str, str] | None = None) -> dict[str, Any]:
    """One source row in `fmt` (built-in or plugin) to the internal schema; raises RowError with a reason
    code, ValueError for an unknown format."""
    converter = CONVERTERS[fmt] if fmt in FORMATS else _plugin_converter(fmt)
    if not isinstance(record, dict):
        raise RowError("bad_type", f"row is {type(record).__name__}, expected an object")
    try:
        return converter(apply_columns(record, columns))
    except RowError as error:
        source = (columns or {}).get(error.detail) if error.code == "missing_field" else None
        if source:
            raise RowError(error.code, f"{error.detail} (mapped from column '{source}')") from None
        raise
