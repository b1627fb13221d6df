"""The built-in chat formats: alpaca, messages (OpenAI), sharegpt, moss and guanaco, each a converter
`record -> {"messages": [...]}` that raises `tasks.data.rows.RowError` for a row it cannot use. Stdlib only.
"""

from __future__ import annotations

import re
from typing import Any

from tasks.data.fields import (
    check_role_order,
    parse_turns,
    structured_field,
    system_turns,
    text_field,
    tool_calls,
)
from tasks.data.rows import RowError


def convert_alpaca(record: dict[str, Any]) -> dict[str, Any]:
    """`instruction`, optional `input` (appended after a blank line), `output`; optional `system` and
    `history` (a list of [user, assistant] pairs that come before the instruction)."""
    instruction = text_field(record, "instruction")
    extra = text_field(record, "input", required=False).strip()
    prompt = f"{instruction}\n\n{extra}" if extra else instruction
    messages = system_turns(record)
    if record.get("history") not in (None, "", []):
        for index, pair in enumerate(structured_field(record, "history", list)):
            if not isinstance(pair, (list, tuple)) or len(pair) != 2:
                raise RowError("bad_type", f"history[{index}] must be a [user, assistant] pair")
            for role, content in zip(("user", "assistant"), pair, strict=True):
                if not isinstance(content, str):
                    raise RowError("bad_type", f"history[{index}] holds a {type(content).__name__}")
                if not content.strip():
                    raise RowError("empty_field", f"history[{index}]")
                messages.append({"role": role, "content": content})
    messages += [
        {"role": "user", "content": prompt},
        {"role": "assistant", "content": text_field(record, "output")},
    ]
    return {"messages": messages}


def convert_messages(record: dict[str, Any]) -> dict[str, Any]:
    """`{"messages": [{"role", "content"}, ...]}` (OpenAI chat), roles system/user/assistant/tool."""
    messages = parse_turns(structured_field(record, "messages", list))
    check_role_order(messages)
    return {"messages": messages}


SHAREGPT_ROLES = {
    "human": "user",
    "user": "user",
    "gpt": "assistant",
    "assistant": "assistant",
    "system": "system",
    "function_call": "assistant",
    "observation": "tool",
    "tool": "tool",
}


def convert_sharegpt(record: dict[str, Any]) -> dict[str, Any]:
    """`conversations: [{"from", "value"}]`; `from` is human/user, gpt/assistant, system, function_call
    (an assistant tool call; the value is JSON with `name`, `arguments`) or observation (a tool result).
    An optional top-level `system` is used when the conversation has no system turn."""
    messages: list[dict[str, Any]] = []
    for index, turn in enumerate(structured_field(record, "conversations", list)):
        if not isinstance(turn, dict):
            raise RowError("bad_type", f"conversations[{index}] is {type(turn).__name__}, expected an object")
        source = turn.get("from")
        if source not in SHAREGPT_ROLES:
            raise RowError("bad_role", f"conversations[{index}].from is {source!r}")
        if source == "function_call":
            if turn.get("value") is None:
                raise RowError("missing_field", f"conversations[{index}].value")
            messages.append({"role": "assistant", "content": "", "tool_calls": tool_calls(turn["value"])})
        else:
            messages.append({"role": SHAREGPT_ROLES[source], "content": text_field(turn, "value")})
    if not (messages and messages[0]["role"] == "system"):
        messages = system_turns(record) + messages
    check_role_order(messages)
    return {"messages": messages}


MOSS_PREFIX = re.compile(r"^\s*<\|(?:Human|MOSS)\|>\s*:?\s*")
MOSS_END = re.compile(r"\s*(?:<eo[hmtcr]>\s*)+$")


def _moss_text(turn: dict[str, Any], key: str, where: str) -> str:
    value = turn.get(key)
    if value is None:
        raise RowError("missing_field", f"{where}.{key}")
    if not isinstance(value, str):
        raise RowError("bad_type", f"{where}.{key} is {type(value).__name__}, expected a string")
    text = MOSS_END.sub("", MOSS_PREFIX.sub("", value)).strip()
    if not text:
        raise RowError("empty_field", f"{where}.{key}")
    return text


def convert_moss(record: dict[str, Any]) -> dict[str, Any]:
    """MOSS multi-turn: `chat: {"turn_1": {"Human": "<|Human|>: ...<eoh>", "MOSS": "<|MOSS|>: ...<eom>"}}`,
    turns in number order, speaker prefixes and end markers stripped; optional `meta_instruction` as
    the system prompt. Inner thoughts, commands and tool responses are not kept."""
    chat = structured_field(record, "chat", dict)
    numbered = []
    for key, turn in chat.items():
        match = re.fullmatch(r"turn_(\d+)", str(key))
        if not match:
            raise RowError("bad_type", f"chat key {key!r} is not turn_<n>")
        if not isinstance(turn, dict):
            raise RowError("bad_type", f"chat.{key} is {type(turn).__name__}, expected an object")
        numbered.append((int(match.group(1)), key, turn))
    messages = system_turns(record, "meta_instruction")
    for _, key, turn in sorted(numbered):
        messages.append({"role": "user", "content": _moss_text(turn, "Human", f"chat.{key}")})
        messages.append({"role": "assistant", "content": _moss_text(turn, "MOSS", f"chat.{key}")})
    return {"messages": messages}


GUANACO_MARKER = re.compile(r"###\s*(Human|Assistant)\s*:")


def convert_guanaco(record: dict[str, Any]) -> dict[str, Any]:
    """Guanaco/OASST `text: "### Human: ... ### Assistant: ..."` split into turns. A last human turn
    with no answer is dropped (it teaches nothing); text before the first marker is refused."""
    text = text_field(record, "text")
    parts = GUANACO_MARKER.split(text)
    if len(parts) == 1:
        raise RowError("missing_field", "text holds no '### Human:' turn")
    if parts[0].strip():
        raise RowError("bad_role_order", "text before the first '### Human:'")
    messages = []
    for speaker, content in zip(parts[1::2], parts[2::2], strict=True):
        role = "user" if speaker == "Human" else "assistant"
        if not content.strip():
            raise RowError("empty_field", f"an empty '### {speaker}:' turn")
        messages.append({"role": role, "content": content.strip()})
    if len(messages) > 1 and messages[-1]["role"] == "user":
        messages.pop()
    check_role_order(messages)
    return {"messages": messages}
