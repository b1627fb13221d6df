"""Batched generation (greedy by default) over chat rows, shared by evaluation and export checks.

Works with any model exposing `generate` (transformers, peft, optimum.onnxruntime).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any


def conversation_of(row: dict[str, Any]) -> list[dict[str, str]]:
    """A chat row's messages; for a preference row (DPO), its prompt followed by the chosen answer; for
    an unpaired (KTO) row, its prompt and answer (good or bad: `eval_rows` scores on the good ones)."""
    if "messages" in row:
        return row["messages"]
    return [*row["prompt"], *(row["completion"] if "completion" in row else row["chosen"])]


def prompt_and_reference(row: dict[str, Any]) -> tuple[list[dict[str, str]], str]:
    """The conversation up to the last assistant turn, and that turn as the reference answer."""
    messages = conversation_of(row)
    return messages[:-1], messages[-1]["content"]


def render_prompts(tokenizer: Any, conversations: Sequence[list[dict[str, str]]]) -> list[str]:
    return [
        tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        for messages in conversations
    ]


def decoding(temperature: float, top_p: float) -> dict[str, Any]:
    """`generate` keyword arguments: greedy at temperature 0, else nucleus sampling."""
    if temperature <= 0:
        return {"do_sample": False}
    return {"do_sample": True, "temperature": temperature, "top_p": top_p}


def generate(
    model: Any,
    tokenizer: Any,
    prompts: Sequence[str],
    max_new_tokens: int,
    batch_size: int,
    sampling: dict[str, Any] | None = None,
    seed: int = 0,
) -> tuple[list[str], dict[str, float]]:
    """Answers for `prompts` (left padded; greedy unless `sampling` says otherwise, see `decoding`) and
    throughput in generated tokens per second."""
    import torch

    sampling = sampling or {"do_sample": False}
    if sampling.get("do_sample"):
        torch.manual_seed(seed)  # every job draws the same random numbers
    tokenizer.padding_side = "left"
    answers: list[str] = []
    generated = 0
    started = time.perf_counter()
    for start in range(0, len(prompts), batch_size):
        batch = tokenizer(
            list(prompts[start : start + batch_size]),
            return_tensors="pt",
            padding=True,
            add_special_tokens=False,
            return_token_type_ids=False,
        ).to(getattr(model, "device", "cpu"))  # an fp16 export scored on CUDA takes CUDA inputs
        with torch.inference_mode():
            output = model.generate(
                **batch,
                max_new_tokens=max_new_tokens,
                **sampling,
                pad_token_id=tokenizer.pad_token_id,
                eos_token_id=tokenizer.eos_token_id,
            )
        new_tokens = output[:, batch["input_ids"].shape[1] :]
        for row in new_tokens:
            generated += int((row != tokenizer.pad_token_id).sum())
        answers += tokenizer.batch_decode(new_tokens, skip_special_tokens=True)
    elapsed = time.perf_counter() - started
    stats = {
        "generated_tokens": generated,
        "seconds": round(elapsed, 3),
        "tokens_per_s": round(generated / elapsed, 2),
    }
    return [a.strip() for a in answers], stats
