"""Bounded reading of raw rows from malformed or hostile files, for the readers in `tasks.data.shards`.

- JSONL lines are read at most `max_row_bytes` at a time: a longer line is skipped in 1 MiB chunks and
  becomes a `too_long` RowError (detail in bytes) before any JSON parse, so a worker never holds it whole.
- A row nested deeper than the JSON parser's recursion limit is a `too_deep` RowError, not a crash.
- A UTF-8 byte order mark at the start of a file is skipped.
- A JSON list is parsed one element at a time, so a too deep or too long element drops only that row.
- A Parquet row (already decoded by pyarrow a batch at a time) over max_row_bytes is `too_long` before
  any converter or tokenizer sees it.

Stdlib only. A file that cannot be read on at all raises `MalformedFile` (the caller names the file).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import IO, Any

from tasks.data.rows import RowError

BOM = b"\xef\xbb\xbf"
CHUNK = 1 << 20  # how much of an oversized line is held at a time while it is skipped
_WHITESPACE = re.compile(r"[ \t\n\r]*")
# A JSON string (escapes included) or a bracket: enough to find where a too deep value ends.
_TOKEN = re.compile(r'"(?:[^"\\]|\\.)*"|[\[\]{}]', re.DOTALL)
_DECODER = json.JSONDecoder()


class MalformedFile(ValueError):
    """A file whose structure (not a single row) is broken; the message says where and what to do."""


def too_long(size: int, max_row_bytes: int) -> RowError:
    return RowError("too_long", f"{size} bytes > max_row_bytes {max_row_bytes}")


def value_bytes(value: Any) -> int:
    """About how many bytes a decoded row holds (its strings as UTF-8, 8 per other scalar): the measure of
    a Parquet row against max_row_bytes, where there is no line to measure. Parquet nests a few levels
    at most, so the recursion is shallow."""
    if isinstance(value, str):
        return len(value) if value.isascii() else len(value.encode())
    if isinstance(value, bytes):
        return len(value)
    if isinstance(value, dict):
        return sum(len(str(key)) + value_bytes(item) for key, item in value.items())
    if isinstance(value, list | tuple):
        return sum(value_bytes(item) for item in value)
    return 8


def too_deep() -> RowError:
    return RowError("too_deep", "nested deeper than the JSON parser's recursion limit")


def skip_line(handle: IO[bytes]) -> tuple[int, int]:
    """Read past the rest of a line a chunk at a time: (bytes skipped, how many of them end the line)."""
    skipped = 0
    while chunk := handle.readline(CHUNK):
        skipped += len(chunk)
        if chunk.endswith(b"\n"):
            return skipped, 2 if chunk.endswith(b"\r\n") else 1
    return skipped, 0


def jsonl_lines(
    handle: IO[bytes], stop: int | None, position: int, max_row_bytes: int
) -> Iterator[bytes | RowError]:
    """The line, or a too_long RowError, for each line whose first byte lies before `stop`,
    from the handle's current offset (`position`). A line is never held longer than max_row_bytes + 2."""
    limit = max_row_bytes + 2  # room for a "\r\n" ending
    first = position == 0
    while stop is None or position < stop:
        raw = handle.readline(limit)
        if not raw:
            return
        consumed = len(raw)
        if consumed == limit and not raw.endswith(b"\n"):
            skipped, ending = skip_line(handle)
            consumed += skipped
            position += consumed
            yield too_long(consumed - ending, max_row_bytes)
            first = False
            continue
        position += consumed
        if first and raw.startswith(BOM):  # a BOM is not part of the first row
            raw = raw[len(BOM) :]
        first = False
        size = len(raw.rstrip(b"\r\n"))
        yield too_long(size, max_row_bytes) if size > max_row_bytes else raw


def parse_line(raw: bytes) -> Any:
    """The JSON value of one line, or the RowError saying why it has none."""
    try:
        return json.loads(raw.decode("utf-8"))
    except UnicodeDecodeError:
        return RowError("not_utf8")
    except json.JSONDecodeError:
        return RowError("unparseable")
    except RecursionError:
        return too_deep()


def _skip_ws(text: str, position: int) -> int:
    return _WHITESPACE.match(text, position).end()


def _value_end(text: str, start: int) -> int:
    """Where the array or object starting at `start` ends, by counting brackets outside strings."""
    depth = 0
    for match in _TOKEN.finditer(text, start):
        token = match.group()
        if token in ("[", "{"):
            depth += 1
        elif token in ("]", "}"):
            depth -= 1
            if depth == 0:
                return match.end()
    raise MalformedFile("a row is not closed before the end of the file")


def json_list_rows(text: str, max_row_bytes: int) -> Iterator[Any]:
    """The elements of a JSON list held in `text`, each a value or a RowError (too_deep, too_long)."""
    position = _skip_ws(text, 0)
    if text.startswith("\ufeff", position):
        position = _skip_ws(text, position + 1)
    if not text.startswith("[", position):
        try:
            found = type(json.loads(text[position:])).__name__
        except (json.JSONDecodeError, RecursionError) as error:
            raise MalformedFile(f"not a JSON list of rows ({error})") from None
        raise MalformedFile(f"a .json dataset must hold a list of rows, found {found}")
    position = _skip_ws(text, position + 1)
    if text.startswith("]", position):
        return _trailing(text, position + 1)
    while True:
        start = position
        try:
            value, position = _DECODER.raw_decode(text, position)
            yield _sized(value, text, start, position, max_row_bytes)
        except RecursionError:
            position = _value_end(text, start)
            yield too_deep()
        except json.JSONDecodeError as error:
            raise MalformedFile(f"not a JSON list of rows ({error})") from None
        position = _skip_ws(text, position)
        if text.startswith(",", position):
            position = _skip_ws(text, position + 1)
            continue
        if text.startswith("]", position):
            return _trailing(text, position + 1)
        raise MalformedFile(f"not a JSON list of rows (expected ',' or ']' at character {position})")


def _sized(value: Any, text: str, start: int, end: int, max_row_bytes: int) -> Any:
    """The element, or too_long when its text is over max_row_bytes (the file is held whole anyway; the
    cap keeps one element from costing the tokenizer 40x its size)."""
    if end - start <= max_row_bytes // 4:  # a character is at most 4 UTF-8 bytes: no need to encode
        return value
    size = len(text[start:end].encode())
    return too_long(size, max_row_bytes) if size > max_row_bytes else value


def _trailing(text: str, position: int) -> None:
    if _skip_ws(text, position) != len(text):
        raise MalformedFile(f"not a JSON list of rows (extra data after the list at character {position})")
