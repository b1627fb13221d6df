"""Batched generation: left padding does not change greedy answers; sampling is seeded; throughput."""

from __future__ import annotations

import pytest

from tasks.scoring.generation import decoding, generate, render_prompts

QUESTIONS = ["Who are you?", "What is your name and who made you, in one sentence?", "Hi"]


@pytest.fixture(scope="module")
def model_and_tokenizer(tiny_model_dir):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir).eval()
    # The saved random weights are small enough that every answer is the same newline; larger ones make
    # answers that differ by prompt, which is what batching could get wrong.
    torch.manual_seed(0)
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.normal_(0, 0.5)
    prompts = render_prompts(tokenizer, [[{"role": "user", "content": q}] for q in QUESTIONS])
    return model, tokenizer, prompts


def test_greedy_answers_are_the_same_in_a_left_padded_batch_as_one_by_one(model_and_tokenizer):
    model, tokenizer, prompts = model_and_tokenizer
    batched, stats = generate(model, tokenizer, prompts, max_new_tokens=8, batch_size=3)
    alone = [generate(model, tokenizer, [p], max_new_tokens=8, batch_size=1)[0][0] for p in prompts]
    assert batched == alone and len(set(batched)) > 1
    assert tokenizer.padding_side == "left"
    assert 0 < stats["generated_tokens"] <= 3 * 8
    # seconds is rounded to the millisecond and the rate to 0.01: they must agree within those roundings
    # (on a loaded machine the generation takes seconds, and then the rate's rounding is the larger one).
    tokens, seconds = stats["generated_tokens"], stats["seconds"]
    low, high = tokens / (seconds + 0.001) - 0.005, tokens / max(seconds - 0.001, 1e-9) + 0.005
    assert low <= stats["tokens_per_s"] <= high


def test_sampling_is_reproducible_with_its_seed_and_differs_from_greedy(model_and_tokenizer):
    model, tokenizer, prompts = model_and_tokenizer
    hot = decoding(temperature=5.0, top_p=1.0)
    assert hot == {"do_sample": True, "temperature": 5.0, "top_p": 1.0}
    assert decoding(temperature=0.0, top_p=0.5) == {"do_sample": False}
    first = generate(model, tokenizer, prompts, 12, 3, hot, seed=7)[0]
    again = generate(model, tokenizer, prompts, 12, 3, hot, seed=7)[0]
    other = generate(model, tokenizer, prompts, 12, 3, hot, seed=8)[0]
    greedy = generate(model, tokenizer, prompts, 12, 3)[0]
    assert first == again
    assert first != other and first != greedy
