"""Reading the fields of a source row the way every format converter does (built-in or plugin): a
required or optional string, a list/object that may arrive as a JSON string, chat turns, tool calls and
the order of roles. Stdlib only. Every problem is a `tasks.data.rows.RowError` with a reason code
(`missing_field`, `empty_field`, `bad_type`, `bad_role`, `bad_role_order`).
"""

from __future__ import annotations

import json
from typing import Any

from tasks.data.rows import RowError

ROLES = ("system", "user", "assistant", "tool")


def text_field(record: dict[str, Any], key: str, required: bool = True) -> str:
    """A string field; a missing optional one is ""."""
    value = record.get(key)
    if value is None:
        if required:
            raise RowError("missing_field", key)
        return ""
    if not isinstance(value, str):
        raise RowError("bad_type", f"{key} is {type(value).__name__}, expected a string")
    if required and not value.strip():
        raise RowError("empty_field", key)
    return value


def structured_field(record: dict[str, Any], key: str, kind: type) -> Any:
    """A list/object field; a JSON string is decoded (CSV cells hold nested values as JSON)."""
    value = record.get(key)
    if value is None:
        raise RowError("missing_field", key)
    if isinstance(value, str) and value.strip()[:1] in ("[", "{"):
        try:
            value = json.loads(value)
        except json.JSONDecodeError:
            raise RowError("bad_type", f"{key} is a string that is not valid JSON") from None
    if not isinstance(value, kind):
        raise RowError("bad_type", f"{key} is {type(value).__name__}, expected a {kind.__name__}")
    if not value:
        raise RowError("empty_field", key)
    return value


def system_turns(record: dict[str, Any], key: str = "system") -> list[dict[str, str]]:
    """The optional system prompt in `key` as a leading system turn, or no turn."""
    system = text_field(record, key, required=False).strip()
    return [{"role": "system", "content": system}] if system else []


def check_role_order(messages: list[dict[str, Any]]) -> None:
    """Optional system first; then user, assistant alternating, tool turns only after an assistant (or
    another tool) turn and followed by an assistant turn; the last turn is the assistant's."""
    if not messages:
        raise RowError("empty_field", "messages")
    turns = messages[1:] if messages[0]["role"] == "system" else messages
    if not turns or turns[-1]["role"] != "assistant":
        raise RowError("bad_role_order", "the last turn must be the assistant's")
    follows = {
        None: ("user",),
        "user": ("assistant",),
        "assistant": ("user", "tool"),
        "tool": ("tool", "assistant"),
    }
    previous = None
    for index, turn in enumerate(turns):
        if turn["role"] not in follows[previous]:
            expected = " or ".join(follows[previous])
            raise RowError("bad_role_order", f"turn {index} is {turn['role']}, expected {expected}")
        previous = turn["role"]


def tool_calls(value: Any) -> list[dict[str, Any]]:
    """`function_call` value (JSON object or list of objects with `name`, `arguments`) to tool_calls."""
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except json.JSONDecodeError:
            raise RowError("bad_type", "function_call value is not JSON") from None
    calls = value if isinstance(value, list) else [value]
    out = []
    for call in calls:
        if not isinstance(call, dict) or not isinstance(call.get("name"), str) or not call["name"].strip():
            raise RowError("bad_type", "function_call value must be an object with a name")
        out.append(
            {"type": "function", "function": {"name": call["name"], "arguments": call.get("arguments", {})}}
        )
    if not out:
        raise RowError("empty_field", "function_call")
    return out


def parse_turn(turn: Any) -> dict[str, Any]:
    """One `{"role", "content"}` turn (an assistant turn may carry `tool_calls` and empty content)."""
    if not isinstance(turn, dict):
        raise RowError("bad_type", f"a turn is {type(turn).__name__}, expected an object")
    role = turn.get("role")
    if role not in ROLES:
        raise RowError("bad_role", f"role {role!r}; must be one of {ROLES}")
    if role == "assistant" and turn.get("tool_calls"):
        calls = turn["tool_calls"]
        if not isinstance(calls, list):
            raise RowError("bad_type", "tool_calls must be a list")
        return {"role": role, "content": text_field(turn, "content", required=False), "tool_calls": calls}
    return {"role": role, "content": text_field(turn, "content")}


def parse_turns(value: list[Any]) -> list[dict[str, Any]]:
    return [parse_turn(turn) for turn in value]
