"""Example data plugin: the Databricks Dolly 15k format, and a filter that drops canned refusals.

Copy this file to write your own. In an experiment conf:

    datasets:
      - name: dolly
        uri: data/databricks-dolly-15k.jsonl
        format: dolly              # or auto: Dolly rows are detected by their keys
        filters: [drop_refusals]

How to write a data plugin
--------------------------
Put a `.py` file in `plugins/data/` (this directory), in a directory listed in `$TUNERFLOW_DATA_PLUGINS`,
or ship it in a package with an entry point in group `tunerflow.data_plugins`. At import it registers:

- a format with `@data_format(name=..., kind=..., keys=..., detect=...)` on a function
  `record -> internal row` (or `register_format(FormatPlugin(...))`). `kind` is what it produces:
  `chat` -> `{"messages": [{"role", "content"}, ...]}` (user/assistant alternating, optional system
  first, the last turn the assistant's), `text` -> `{"text": str}`, `preference` ->
  `{"prompt": [messages], "chosen": [assistant messages], "rejected": [assistant messages]}`, `vision`
  -> `{"messages": [...], "images": [path or URI, ...]}` with one `<image>` in the user turns per image
  (paths relative to the dataset file; the images are then resolved and checked like the built-in
  `llava` format's).
  `keys` are the source keys it reads, so users can map theirs with `columns`. For a record it
  cannot use, raise `RowError(code, detail)` with a lowercase snake_case code (`missing_field`,
  `empty_field`, `bad_type` like the built-in formats, whose field readers are in `tasks.data.fields`);
  the row is dropped with that reason. Output of the wrong shape is dropped as `bad_plugin_output`,
  any other exception as `plugin_error`.
  `detect(record) -> bool` (optional) lets `format: auto` pick the format; look at the keys only.
- a row filter with `@row_filter(name=...)` on a function `internal row -> None` (keep) or a reason
  code (drop). Filters see converted rows of any kind; skip the kinds you do not handle.

Rules: import only the standard library at module level (`plugins/` is also Airflow's plugins folder,
and Airflow imports this file in every component; import heavy libraries inside your functions), keep
the import free of side effects other than registering (it may happen twice), and give the file a
distinctive name: Airflow imports it under its bare file name, so `json.py` would shadow `json`.
"""

from __future__ import annotations

import re
from typing import Any

from tasks.data.fields import text_field
from tasks.data.plugins import data_format, row_filter

DOLLY_KEYS = ("instruction", "context", "response")


def looks_like_dolly(record: dict[str, Any]) -> bool:
    """All three Dolly keys; `category` is not needed (it is often dropped from copies)."""
    return all(key in record for key in DOLLY_KEYS)


@data_format(name="dolly", kind="chat", keys=DOLLY_KEYS, detect=looks_like_dolly)
def convert_dolly(record: dict[str, Any]) -> dict[str, Any]:
    """Databricks Dolly 15k: instruction (with its context below it) -> user turn, response -> assistant."""
    instruction = text_field(record, "instruction")
    # Dolly keeps an empty context for closed questions; only a real one is worth the extra prompt text.
    context = text_field(record, "context", required=False).strip()
    prompt = f"{instruction}\n\nContext:\n{context}" if context else instruction
    return {
        "messages": [
            {"role": "user", "content": prompt},
            {"role": "assistant", "content": text_field(record, "response")},
        ]
    }


# Openings of canned refusals; straight or typographic apostrophes, matched after leading spaces.
REFUSAL = re.compile(
    r"\s*(?:as an ai language model|i[’']m sorry,? but i (?:can[’']?t|cannot)|i cannot help with)",
    re.IGNORECASE,
)


def _last_answer(row: dict[str, Any]) -> str | None:
    """The content of the last assistant turn with text: of the chat, or of the chosen answer (a refusal
    in the rejected answer is what preference data is for). None for text rows."""
    turns = row.get("messages") or row.get("chosen") or []
    answers = [turn["content"] for turn in turns if turn.get("role") == "assistant" and turn.get("content")]
    return answers[-1] if answers else None


@row_filter(name="drop_refusals")
def drop_refusals(row: dict[str, Any]) -> str | None:
    """Drop rows whose answer is a canned refusal ("As an AI language model", "I'm sorry, but I can't")."""
    answer = _last_answer(row)
    return "refusal" if answer is not None and REFUSAL.match(answer) else None
