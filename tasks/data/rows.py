"""The row model of dataset preparation: reason-coded row errors, normalisation and the failure message.
Stdlib only: format plugins and conf validation import it. The split rules are in `tasks.data.splitting`.

Internal schema: `{"id": str, "messages": [{"role", "content"}, ...]}` for chat-style data and
`{"id": str, "text": str}` for raw text, `{"id", "prompt", "chosen", "rejected"}` (message lists) for
preference pairs. The per-format converters and format detection are in `tasks.data.formats`. Every
dropped row gets a reason code.
"""

from __future__ import annotations

import json
import unicodedata
from collections import Counter
from typing import Any

# Rows longer than this many bytes (a JSONL line, a JSON list element, a CSV cell) are dropped as
# `too_long` before they are parsed: 1 MiB is about 250k tokens, beyond any context tunerflow trains at,
# and it keeps a worker's memory bounded by its shard, not by the longest line (a 200 MB line parsed and
# tokenized costs ~40x its size). Per dataset: `max_row_bytes` in tasks.config.dataset.
DEFAULT_MAX_ROW_BYTES = 1 << 20


class RowError(ValueError):
    """A row that cannot be used; `code` is the machine-readable reason."""

    def __init__(self, code: str, detail: str = ""):
        super().__init__(f"{code}: {detail}" if detail else code)
        self.code = code
        self.detail = detail


def _turns(messages: list[dict[str, Any]]) -> str:
    # The content is stripped before it is glued to its role: `user:  What` and `user:What` must fold to
    # the same key, and whitespace next to a field boundary never changes what a turn says.
    return "\n".join(
        f"{m['role']}:{m['content'].strip()}"
        + (json.dumps(m["tool_calls"], sort_keys=True) if m.get("tool_calls") else "")
        for m in messages
    )


def _fold(raw: str) -> str:
    # ASCII text (most rows) is its own NFKC form and casefolds like lower(): skip the Unicode tables.
    folded = raw.lower() if raw.isascii() else unicodedata.normalize("NFKC", raw).casefold()
    return " ".join(folded.split())


def _image_lines(row: dict[str, Any]) -> str:
    """A vision row's image references, one line each (none for other rows)."""
    return "".join(f"\nimage: {ref}" for ref in row.get("images", ()))


def message_parts(row: dict[str, Any]) -> tuple[str, ...]:
    """The message-list fields of a prepared prompt/answer row: an unpaired (KTO) row's or a pair's."""
    return ("prompt", "completion") if "completion" in row else ("prompt", "chosen", "rejected")


def normalise(row: dict[str, Any]) -> str:
    """Text used for duplicate detection and split assignment: case, width and spacing folded, including
    whitespace at the start and end of every field (text, each turn of a chat or preference pair)."""
    if "text" in row:
        return _fold(row["text"])
    if "prompt" in row:
        text = "\n".join(f"{part}:\n{_turns(row[part])}" for part in message_parts(row))
        # An unpaired row's label is part of it: the same answer marked good and bad is not a duplicate.
        return _fold(text + (f"\nlabel: {row['label']}" if "label" in row else ""))
    # A vision row's images are part of it: the same question about two images is not a duplicate.
    return _fold(_turns(row["messages"]) + _image_lines(row))


def prompt_text(row: dict[str, Any]) -> str:
    """The folded text of what a model is asked: what decontamination compares across splits. Answers and
    system prompts are left out, because many rows legitimately share a stock answer or system prompt."""
    if "text" in row:
        return _fold(row["text"])
    messages = row["prompt"] if "prompt" in row else row["messages"][:-1]
    # A vision row asks about its images: the same question about another image is another question.
    return _fold(
        "\n".join(m["content"] for m in messages if m["role"] in ("user", "tool")) + _image_lines(row)
    )


def failure_message(
    name: str, total: int, reasons: Counter, examples: list[str], max_drop_ratio: float
) -> str | None:
    """None when the drop ratio is acceptable, else a message with the top reasons and example row ids."""
    dropped = sum(reasons.values())
    ratio = dropped / max(total, 1)
    if total and ratio <= max_drop_ratio and dropped < total:
        return None
    top = ", ".join(f"{reason} ({count})" for reason, count in reasons.most_common(3))
    return (
        f"dataset '{name}': {dropped} of {total} rows dropped ({ratio:.0%}), above "
        f"max_drop_ratio {max_drop_ratio:.0%}. Top reasons: {top or 'no rows'}. Example rows: "
        f"{', '.join(examples[:5]) or '-'}. See rejected.jsonl; fix the rows or raise "
        "datasets[].max_drop_ratio."
    )
