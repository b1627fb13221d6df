"""A base model's chat template (the catalog's, else ChatML) and where the assistant answers lie in a
rendered conversation: what the text and vision SFT mask their labels with."""

from __future__ import annotations

import logging
from typing import Any

from tasks.config.catalog import CatalogEntry

log = logging.getLogger("tunerflow.train")

# Used only for a base model whose tokenizer ships no chat template and whose catalog entry names none.
CHATML_TEMPLATE = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n{{ message['content'] }}<|im_end|>\n"
    "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


def ensure_chat_template(tokenizer: Any, entry: CatalogEntry) -> None:
    """Give a base model's tokenizer the catalog's chat template (else ChatML) when it has none."""
    if tokenizer.chat_template:
        return
    template = getattr(entry, "chat_template", None)
    if template:
        tokenizer.chat_template = template
        return
    log.warning(
        "model '%s' has no chat template; using ChatML (set chat_template in its catalog entry)", entry.name
    )
    tokenizer.chat_template = CHATML_TEMPLATE


def _render(tokenizer: Any, messages: list[dict[str, Any]], generation_prompt: bool = False) -> str:
    return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=generation_prompt)


def assistant_spans(tokenizer: Any, messages: list[dict[str, Any]]) -> tuple[str, list[tuple[int, int]]]:
    """The rendered conversation and the character spans of each assistant answer in it.

    An answer's span starts where the template's generation prompt for it ends and stops after the
    end-of-turn token (whitespace after that token is a separator the model never generates). The
    spans come from rendering growing prefixes of the conversation, which needs a template that
    renders a prefix as a prefix of the whole (every common chat template does).
    """
    text = _render(tokenizer, messages)
    spans = []
    for index, message in enumerate(messages):
        if message["role"] != "assistant":
            continue
        before = _render(tokenizer, messages[:index], generation_prompt=True)
        through = _render(tokenizer, messages[: index + 1]).rstrip()
        if not (through.startswith(before) and text.startswith(through)):
            raise ValueError(
                f"the chat template does not render turn {index} of the conversation as a prefix of the "
                "whole conversation, so its answer tokens cannot be located"
            )
        spans.append((len(before), len(through)))
    return text, spans
