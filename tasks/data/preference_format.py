"""The built-in preference formats: pairs (DPO, ORPO, SimPO, CPO, KTO) and unpaired good/bad answers
(KTO), and the checks that hold a plugin's rows of those kinds to the same shape. Stdlib only.
"""

from __future__ import annotations

from typing import Any

from tasks.data.fields import check_role_order, parse_turns, structured_field, system_turns, text_field
from tasks.data.rows import RowError

PREFERENCE_KEYS = ("prompt", "chosen", "rejected")
# KTO's unpaired rows: one answer to a prompt and whether it is a good (true) or bad (false) one.
UNPAIRED_KEYS = ("prompt", "completion", "label")
# OpenAI's DPO fine-tuning rows: the prompt under `input.messages`, the answers as assistant messages.
OPENAI_PREFERENCE_KEYS = ("input", "preferred_output", "non_preferred_output")


def _completion(record: dict[str, Any], key: str) -> list[dict[str, Any]]:
    value = record.get(key)
    if isinstance(value, str) or value is None:
        return [{"role": "assistant", "content": text_field(record, key)}]
    if isinstance(value, dict):
        value = [value]
    if not isinstance(value, list):
        raise RowError("bad_type", f"{key} is {type(value).__name__}, expected a string or messages")
    if not value:
        raise RowError("empty_field", key)
    return parse_turns(value)


def convert_preference(record: dict[str, Any]) -> dict[str, Any]:
    """Preference pairs for DPO. Either `prompt`, `chosen`, `rejected` (strings, or `prompt` as messages
    and `chosen`/`rejected` as assistant messages), or `chosen`/`rejected` as whole conversations
    whose shared leading turns are the prompt. Optional `system` when the prompt has none."""
    if record.get("prompt") is not None:
        prompt_value = record["prompt"]
        if isinstance(prompt_value, list):
            if not prompt_value:
                raise RowError("empty_field", "prompt")
            prompt = parse_turns(prompt_value)
        else:
            prompt = [{"role": "user", "content": text_field(record, "prompt")}]
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
            whole[key] = parse_turns(value)
        shared = 0
        limit = min(len(whole["chosen"]), len(whole["rejected"])) - 1
        while shared < limit and whole["chosen"][shared] == whole["rejected"][shared]:
            shared += 1
        prompt = whole["chosen"][:shared]
        chosen, rejected = whole["chosen"][shared:], whole["rejected"][shared:]
        if not prompt:
            raise RowError("missing_field", "prompt (chosen and rejected share no leading turns)")
    if prompt[0]["role"] != "system":
        prompt = system_turns(record) + prompt
    return _pair(prompt, chosen, rejected)


def convert_openai_preference(record: dict[str, Any]) -> dict[str, Any]:
    """OpenAI's DPO rows: `{"input": {"messages": [...]}, "preferred_output": [assistant messages],
    "non_preferred_output": [assistant messages]}` (`input.tools` and the like are not read)."""
    source = structured_field(record, "input", dict)
    messages = source.get("messages")
    if messages is None:
        raise RowError("missing_field", "input.messages")
    if not isinstance(messages, list):
        raise RowError("bad_type", f"input.messages is {type(messages).__name__}, expected a list")
    if not messages:
        raise RowError("empty_field", "input.messages")
    for key in OPENAI_PREFERENCE_KEYS[1:]:
        if record.get(key) is None:
            raise RowError("missing_field", key)
        if not isinstance(record[key], list):
            raise RowError("bad_type", f"{key} is {type(record[key]).__name__}, expected a list of messages")
    return convert_preference(
        {"prompt": messages, "chosen": record["preferred_output"], "rejected": record["non_preferred_output"]}
    )


def check_preference_row(row: dict[str, Any]) -> dict[str, Any]:
    """Only the shape convert_preference produces: a prompt and answers, each a list of messages."""
    prompt, chosen, rejected = (parse_turns(structured_field(row, key, list)) for key in PREFERENCE_KEYS)
    return _pair(prompt, chosen, rejected)


def _pair(prompt: list[dict[str, Any]], chosen: list[dict[str, Any]], rejected: list[dict[str, Any]]):
    """The row, once each answer holds only answer turns and follows the prompt in a valid role order."""
    for answer in (chosen, rejected):
        if any(m["role"] not in ("assistant", "tool") for m in answer):
            raise RowError("bad_role_order", "chosen and rejected must hold only the answer turns")
        check_role_order(prompt + answer)
    return {"prompt": prompt, "chosen": chosen, "rejected": rejected}


def _label(record: dict[str, Any]) -> bool:
    value = record.get("label")
    if value is None:
        raise RowError("missing_field", "label")
    if not isinstance(value, bool):
        raise RowError("bad_type", f"label is {type(value).__name__}, expected true (good) or false (bad)")
    return value


def convert_unpaired(record: dict[str, Any]) -> dict[str, Any]:
    """KTO's unpaired rows, as TRL's KTO docs show them: `prompt` (a string or messages), `completion`
    (a string or assistant messages) and `label` (true: a good answer, false: a bad one). Optional
    `system` when the prompt has none."""
    label = _label(record)
    prompt_value = record.get("prompt")
    if isinstance(prompt_value, list):
        if not prompt_value:
            raise RowError("empty_field", "prompt")
        prompt = parse_turns(prompt_value)
    else:
        prompt = [{"role": "user", "content": text_field(record, "prompt")}]
    if prompt[0]["role"] != "system":
        prompt = system_turns(record) + prompt
    return _unpaired(prompt, _completion(record, "completion"), label)


def check_unpaired_row(row: dict[str, Any]) -> dict[str, Any]:
    """Only the shape convert_unpaired produces: prompt and completion as messages, a boolean label."""
    prompt, completion = (parse_turns(structured_field(row, key, list)) for key in UNPAIRED_KEYS[:2])
    return _unpaired(prompt, completion, _label(row))


def _unpaired(prompt: list[dict[str, Any]], completion: list[dict[str, Any]], label: bool) -> dict[str, Any]:
    if any(m["role"] not in ("assistant", "tool") for m in completion):
        raise RowError("bad_role_order", "completion must hold only the answer turns")
    check_role_order(prompt + completion)
    return {"prompt": prompt, "completion": completion, "label": label}
