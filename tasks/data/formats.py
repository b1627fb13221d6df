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

`columns` maps the format's expected key to the source key holding it, e.g.
`{"instruction": "question", "output": "answer"}`; it is applied before conversion.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from typing import Any

from tasks.data import plugins as data_plugins
from tasks.data.plugin_registry import BUILTIN_FORMATS as FORMATS
from tasks.data.rows import RowError

ROLES = ("system", "user", "assistant", "tool")

# Keys each format reads, so a `columns` mapping naming anything else is refused as a typo.
EXPECTED_KEYS = {
    "alpaca": ("instruction", "input", "output", "system", "history"),
    "sharegpt": ("conversations", "system"),
    "moss": ("chat", "meta_instruction"),
    "guanaco": ("text",),
    "messages": ("messages",),
    "text": ("text",),
    "preference": ("prompt", "chosen", "rejected", "system"),
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


# ---------------------------------------------------------------------------------------------- helpers


def _text(record: dict[str, Any], key: str, required: bool = True) -> str:
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


def _structured(record: dict[str, Any], key: str, kind: type) -> Any:
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


def _system(record: dict[str, Any], key: str = "system") -> list[dict[str, str]]:
    system = _text(record, key, required=False).strip()
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


def _tool_calls(value: Any) -> list[dict[str, Any]]:
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


def _message(turn: Any) -> dict[str, Any]:
    if not isinstance(turn, dict):
        raise RowError("bad_type", f"a turn is {type(turn).__name__}, expected an object")
    role = turn.get("role")
    if role not in ROLES:
        raise RowError("bad_role", f"role {role!r}; must be one of {ROLES}")
    if role == "assistant" and turn.get("tool_calls"):
        calls = turn["tool_calls"]
        if not isinstance(calls, list):
            raise RowError("bad_type", "tool_calls must be a list")
        return {"role": role, "content": _text(turn, "content", required=False), "tool_calls": calls}
    return {"role": role, "content": _text(turn, "content")}


def _messages(value: list[Any]) -> list[dict[str, Any]]:
    return [_message(turn) for turn in value]


# ------------------------------------------------------------------------------------------- converters


def convert_text(record: dict[str, Any]) -> dict[str, Any]:
    """`{"text"}`: raw text for pretraining."""
    return {"text": _text(record, "text")}


def convert_alpaca(record: dict[str, Any]) -> dict[str, Any]:
    """`instruction`, optional `input` (appended after a blank line), `output`; optional `system` and
    `history` (a list of [user, assistant] pairs that come before the instruction)."""
    instruction = _text(record, "instruction")
    extra = _text(record, "input", required=False).strip()
    prompt = f"{instruction}\n\n{extra}" if extra else instruction
    messages = _system(record)
    if record.get("history") not in (None, "", []):
        for index, pair in enumerate(_structured(record, "history", list)):
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
        {"role": "assistant", "content": _text(record, "output")},
    ]
    return {"messages": messages}


def convert_messages(record: dict[str, Any]) -> dict[str, Any]:
    """`{"messages": [{"role", "content"}, ...]}` (OpenAI chat), roles system/user/assistant/tool."""
    messages = _messages(_structured(record, "messages", list))
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
    for index, turn in enumerate(_structured(record, "conversations", list)):
        if not isinstance(turn, dict):
            raise RowError("bad_type", f"conversations[{index}] is {type(turn).__name__}, expected an object")
        source = turn.get("from")
        if source not in SHAREGPT_ROLES:
            raise RowError("bad_role", f"conversations[{index}].from is {source!r}")
        if source == "function_call":
            if turn.get("value") is None:
                raise RowError("missing_field", f"conversations[{index}].value")
            messages.append({"role": "assistant", "content": "", "tool_calls": _tool_calls(turn["value"])})
        else:
            messages.append({"role": SHAREGPT_ROLES[source], "content": _text(turn, "value")})
    if not (messages and messages[0]["role"] == "system"):
        messages = _system(record) + messages
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
    chat = _structured(record, "chat", dict)
    numbered = []
    for key, turn in chat.items():
        match = re.fullmatch(r"turn_(\d+)", str(key))
        if not match:
            raise RowError("bad_type", f"chat key {key!r} is not turn_<n>")
        if not isinstance(turn, dict):
            raise RowError("bad_type", f"chat.{key} is {type(turn).__name__}, expected an object")
        numbered.append((int(match.group(1)), key, turn))
    messages = _system(record, "meta_instruction")
    for _, key, turn in sorted(numbered):
        messages.append({"role": "user", "content": _moss_text(turn, "Human", f"chat.{key}")})
        messages.append({"role": "assistant", "content": _moss_text(turn, "MOSS", f"chat.{key}")})
    return {"messages": messages}


GUANACO_MARKER = re.compile(r"###\s*(Human|Assistant)\s*:")


def convert_guanaco(record: dict[str, Any]) -> dict[str, Any]:
    """Guanaco/OASST `text: "### Human: ... ### Assistant: ..."` split into turns. A last human turn
    with no answer is dropped (it teaches nothing); text before the first marker is refused."""
    text = _text(record, "text")
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


def _completion(record: dict[str, Any], key: str) -> list[dict[str, Any]]:
    value = record.get(key)
    if isinstance(value, str) or value is None:
        return [{"role": "assistant", "content": _text(record, key)}]
    if isinstance(value, dict):
        value = [value]
    if not isinstance(value, list):
        raise RowError("bad_type", f"{key} is {type(value).__name__}, expected a string or messages")
    if not value:
        raise RowError("empty_field", key)
    return _messages(value)


def convert_preference(record: dict[str, Any]) -> dict[str, Any]:
    """Preference pairs for DPO. Either `prompt`, `chosen`, `rejected` (strings, or `prompt` as messages
    and `chosen`/`rejected` as assistant messages), or `chosen`/`rejected` as whole conversations
    whose shared leading turns are the prompt. Optional `system` when the prompt has none."""
    if record.get("prompt") is not None:
        prompt_value = record["prompt"]
        if isinstance(prompt_value, list):
            if not prompt_value:
                raise RowError("empty_field", "prompt")
            prompt = _messages(prompt_value)
        else:
            prompt = [{"role": "user", "content": _text(record, "prompt")}]
        chosen, rejected = _completion(record, "chosen"), _completion(record, "rejected")
    else:
        whole = {}
        for key in ("chosen", "rejected"):
            value = record.get(key)
            if value is None:
                raise RowError("missing_field", f"prompt (or {key} as a whole conversation)")
            if not isinstance(value, list):
                raise RowError("bad_type", f"{key} must be a conversation when there is no prompt")
            if not value:
                raise RowError("empty_field", key)
            whole[key] = _messages(value)
        shared = 0
        limit = min(len(whole["chosen"]), len(whole["rejected"])) - 1
        while shared < limit and whole["chosen"][shared] == whole["rejected"][shared]:
            shared += 1
        prompt = whole["chosen"][:shared]
        chosen, rejected = whole["chosen"][shared:], whole["rejected"][shared:]
        if not prompt:
            raise RowError("missing_field", "prompt (chosen and rejected share no leading turns)")
    if prompt[0]["role"] != "system":
        prompt = _system(record) + prompt
    for answer in (chosen, rejected):
        if any(m["role"] not in ("assistant", "tool") for m in answer):
            raise RowError("bad_role_order", "chosen and rejected must hold only the answer turns")
        check_role_order(prompt + answer)
    return {"prompt": prompt, "chosen": chosen, "rejected": rejected}


CONVERTERS: dict[str, Callable[[dict[str, Any]], dict[str, Any]]] = {
    "alpaca": convert_alpaca,
    "sharegpt": convert_sharegpt,
    "moss": convert_moss,
    "guanaco": convert_guanaco,
    "messages": convert_messages,
    "text": convert_text,
    "preference": convert_preference,
}


# ---------------------------------------------------------------------------------------- plugin formats


def _chat_output(row: dict[str, Any]) -> dict[str, Any]:
    messages = _messages(_structured(row, "messages", list))
    check_role_order(messages)
    return {"messages": messages}


def _text_output(row: dict[str, Any]) -> dict[str, Any]:
    return {"text": _text(row, "text")}


def _preference_output(row: dict[str, Any]) -> dict[str, Any]:
    """Only the shape convert_preference produces: a prompt and answers, each a list of messages."""
    prompt, chosen, rejected = (_messages(_structured(row, key, list)) for key in PREFERENCE_KEYS)
    for answer in (chosen, rejected):
        if any(m["role"] not in ("assistant", "tool") for m in answer):
            raise RowError("bad_role_order", "chosen and rejected must hold only the answer turns")
        check_role_order(prompt + answer)
    return {"prompt": prompt, "chosen": chosen, "rejected": rejected}


PREFERENCE_KEYS = ("prompt", "chosen", "rejected")
# Per kind: the keys an internal row has, and the check that normalises it the way built-in rows are.
OUTPUT_CHECKS: dict[str, tuple[frozenset[str], Callable[[dict[str, Any]], dict[str, Any]]]] = {
    "chat": (frozenset({"messages"}), _chat_output),
    "text": (frozenset({"text"}), _text_output),
    "preference": (frozenset(PREFERENCE_KEYS), _preference_output),
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


# ------------------------------------------------------------------------------------------- detection

# Structured formats, in the order they are checked; a row matching more than one is ambiguous.
SIGNATURES: tuple[tuple[str, Callable[[dict[str, Any]], bool]], ...] = (
    ("preference", lambda r: "chosen" in r and "rejected" in r),
    ("messages", lambda r: "messages" in r),
    ("sharegpt", lambda r: "conversations" in r),
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
    2. preference (`chosen` and `rejected`), messages (`messages`), sharegpt (`conversations`), moss
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
