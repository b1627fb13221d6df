"""GRPO rewarded by a scoring metric: the reward function scores each generated answer with the same
metric module the evaluate step ranks with, and on a tiny task that a random model can sometimes solve
(a one-word answer from a vocabulary of a few words) the mean exact_match reward rises. With llm_judge
the answers of a batch are graded concurrently by the evaluate step's client, against a slow local
OpenAI-compatible server that counts the requests it holds at once."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from tasks.runtime.errors import StepError
from tasks.training.grpo_reward import answer_text, grpo_rows, metric_reward
from tests.fixtures.tiny_model import CHATML, save_tiny_llama
from tests.fixtures.tiny_model import SPECIAL as CHAT_SPECIAL
from tests.tasks.training.test_train_types import make_job, trainer_for, write_dataset

WORDS = ["user", "assistant", "say", "yes", "no"]
SPECIAL = [*CHAT_SPECIAL, "<unk>"]


def build_word_model(target: Path) -> Path:
    """A random Llama over a word-level vocabulary of nine tokens: a sampled one-word answer is right
    about one time in nine, so GRPO's groups of answers hold both right and wrong ones."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {token: index for index, token in enumerate(SPECIAL + WORDS)}
    words = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    words.pre_tokenizer = pre_tokenizers.Whitespace()
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=words,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        bos_token="<|im_start|>",
        unk_token="<unk>",
        model_input_names=["input_ids", "attention_mask"],  # a Llama takes no token_type_ids
    )
    tokenizer.add_special_tokens({"additional_special_tokens": SPECIAL[:3]})
    tokenizer.chat_template = CHATML
    return save_tiny_llama(target, tokenizer, max_positions=64)


def chat(question: str, answer: str) -> dict:
    return {"messages": [{"role": "user", "content": question}, {"role": "assistant", "content": answer}]}


def word_job(tmp_path: Path, method: str, **hparams):
    """A GRPO job on the word model, over two rows asking for "yes" and "no"."""
    model = build_word_model(tmp_path / "words")
    data = write_dataset(tmp_path / "chat", [chat("say yes", "yes"), chat("say no", "no")])
    return make_job(tmp_path, model, data, "chat", "grpo", method, **hparams)


def test_grpo_raises_the_mean_exact_match_reward(tmp_path):
    job = word_job(
        tmp_path,
        "full",
        batch_size=16,
        micro_batch_size=16,
        max_steps=12,
        learning_rate=3e-2,
        grpo_reward="exact_match",
        grpo_num_generations=8,
        grpo_max_completion_length=1,
        grpo_temperature=1.0,
    )
    trainer, _ = trainer_for(job, tmp_path)
    trainer.train()
    means = [
        e["rewards/exact_match/mean"] for e in trainer.state.log_history if "rewards/exact_match/mean" in e
    ]
    print("grpo exact_match reward per step", [round(m, 3) for m in means])
    assert len(means) == 12
    first, last = sum(means[:3]) / 3, sum(means[-3:]) / 3
    assert last > first + 0.2, means


def test_the_reward_scores_each_answer_with_the_metric_module():
    reward = metric_reward("exact_match")
    prompts = [[{"role": "user", "content": "say yes"}]] * 3
    completions = [
        [{"role": "assistant", "content": "Yes."}],
        [{"role": "assistant", "content": "no"}],
        "yes",
    ]
    assert reward(prompts, completions, reference=["yes", "yes", "yes"]) == [1.0, 0.0, 1.0]
    assert reward.__name__ == "exact_match"
    assert answer_text([{"role": "assistant", "content": "a"}, {"role": "assistant", "content": "b"}]) == "ab"


def test_grpo_rows_split_a_chat_before_its_last_answer_and_refuse_other_kinds():
    rows = grpo_rows([{"id": "0", **chat("say yes", "yes")}], "chat")
    assert rows == [{"prompt": [{"role": "user", "content": "say yes"}], "reference": "yes"}]
    with pytest.raises(StepError, match="grpo trains on chat rows, not preference rows"):
        grpo_rows([], "preference")
    with pytest.raises(StepError, match="reward with a text metric"):
        metric_reward("eval_loss")


def test_the_llm_judge_rewards_through_its_client_and_the_train_step_gets_its_connection(monkeypatch):
    from tasks.config.scoring import JudgeConfig
    from tasks.scoring.judge import reward_judge_env
    from tests.fixtures.openai_server import OpenAIServer, connection_json

    with OpenAIServer() as server:
        monkeypatch.setenv("AIRFLOW_CONN_TUNERFLOW_JUDGE", connection_json(server))
        reward = metric_reward("llm_judge", JudgeConfig(backoff_s=0, timeout_s=5).model_dump())
        prompts = [[{"role": "user", "content": "Capital of France?"}]] * 2
        right, wrong = reward(prompts, ["It is Paris.", "Lyon"], reference=["Paris", "Paris"])
        assert right > wrong
        assert len(server.requests) == 2  # one grade per generated answer
        record = {
            "experiment": {"training": {"type": "grpo"}, "scoring": {"primary": "rouge_l"}},
            "hparams": [{"name": "a", "grpo_reward": "llm_judge"}],
        }
        assert list(reward_judge_env(record)) == ["AIRFLOW_CONN_TUNERFLOW_JUDGE"]
    record["hparams"] = [{"name": "a", "grpo_reward": None}]  # scoring.primary rouge_l: no judge
    assert reward_judge_env(record) == {}
    record["experiment"]["training"]["type"] = "sft"
    assert reward_judge_env(record) == {}


def test_the_reward_defaults_to_scoring_primary_and_the_eval_batch_holds_whole_groups(tmp_path):
    from tasks.config.scoring import ScoringConfig

    job = word_job(tmp_path, "lora", batch_size=8, micro_batch_size=2, grpo_num_generations=4)
    scoring = ScoringConfig(metrics=["rouge_l", "token_f1"], primary="token_f1")
    trainer, _ = trainer_for(job.model_copy(update={"scoring": scoring}), tmp_path)
    assert [reward.__name__ for reward in trainer.reward_funcs] == ["token_f1"]
    # TRL refuses an eval batch that is not a multiple of num_generations; micro_batch_size 2 would be.
    assert trainer.args.per_device_eval_batch_size == 4
    assert trainer.args.generation_batch_size == 8  # batch_size answers per step: two prompts x 4


def expected_exact_match(model, tokenizer) -> float:
    """The mean exact_match reward a one-word answer sampled at temperature 1 gets on the two rows: the
    model's probability of the right word, exactly (no sampling noise)."""
    import torch

    total = 0.0
    for question, answer in (("say yes", "yes"), ("say no", "no")):
        prompt = [{"role": "user", "content": question}]
        ids = tokenizer.apply_chat_template(prompt, add_generation_prompt=True, return_tensors="pt")
        with torch.no_grad():
            logits = model(input_ids=ids.to(model.device)).logits[0, -1].float()
        total += torch.softmax(logits, -1)[tokenizer.convert_tokens_to_ids(answer)].item()
    return total / 2


@pytest.mark.parametrize(("layers", "checkpointing"), [(1, False), (2, True)])
def test_grpo_with_freeze_raises_the_reward_and_changes_only_the_last_layers(tmp_path, layers, checkpointing):
    """method freeze with GRPO: the expected exact_match reward rises in 4 steps, and of the state dict
    only the last N layers' weights change (embeddings, the tied lm_head and the final norm stay)."""
    from tests.tasks.training.test_train_types import assert_only_the_last_layers_changed, train_and_compare

    job = word_job(
        tmp_path,
        "freeze",
        freeze_trainable_layers=layers,
        gradient_checkpointing=checkpointing,
        batch_size=16,
        micro_batch_size=16,
        max_steps=4,
        learning_rate=3e-2,
        grpo_reward="exact_match",
        grpo_num_generations=8,
        grpo_max_completion_length=1,
        grpo_temperature=1.0,
    )
    trainer, tokenizer = trainer_for(job, tmp_path)
    before = expected_exact_match(trainer.model, tokenizer)
    run = train_and_compare(trainer)
    after = expected_exact_match(trainer.model, tokenizer)
    print("grpo freeze", layers, "expected exact_match", round(before, 4), "->", round(after, 4))
    assert_only_the_last_layers_changed(run, layers)
    assert after > before + 0.02, (before, after)


KEY = "sk-test-0123456789abcdef"


def judge_reward(monkeypatch, server, **judge):
    from tasks.config.scoring import JudgeConfig
    from tests.fixtures.openai_server import connection_json

    monkeypatch.setenv("AIRFLOW_CONN_TUNERFLOW_JUDGE", connection_json(server))
    return metric_reward("llm_judge", JudgeConfig(backoff_s=0, timeout_s=5, **judge).model_dump())


# Right answers contain the reference "Paris" (the server grades 10: reward 1), wrong ones do not
# (grade 2: reward 1/9).
ANSWERS = ["Paris.", "Lyon", "Nice", "It is Paris", "paris!", "Rome"]
EXPECTED = [1.0, 1 / 9, 1 / 9, 1.0, 1.0, 1 / 9]


@pytest.mark.parametrize("concurrency", [len(ANSWERS), 2])
def test_the_llm_judge_grades_a_batch_of_answers_concurrently_and_in_order(monkeypatch, concurrency):
    from tests.fixtures.openai_server import OpenAIServer, Scripted

    with OpenAIServer(api_key=KEY) as server:
        reward = judge_reward(monkeypatch, server, max_concurrency=concurrency)
        # Every request is slow, the first to arrive the slowest: replies come back out of row order.
        server.queue(*[Scripted(delay_s=0.5 + 0.1 * (len(ANSWERS) - i)) for i in range(len(ANSWERS))])
        prompts = [[{"role": "user", "content": "Capital of France?"}]] * len(ANSWERS)
        rewards = reward(prompts, ANSWERS, reference=["Paris"] * len(ANSWERS))
        assert rewards == pytest.approx(EXPECTED)
        assert len(server.requests) == len(ANSWERS)
        # All answers in flight at once with max_concurrency N (one after the other, this was 1), and no
        # more than the bound with a smaller one.
        assert server.max_in_flight == concurrency
        print("max_concurrency", concurrency, "max in flight", server.max_in_flight, "rewards", rewards)


def test_the_judge_reward_retries_counts_a_few_ungraded_answers_0_and_fails_on_too_many(monkeypatch, caplog):
    from tasks.scoring.judge_connection import JudgeError
    from tests.fixtures.openai_server import OpenAIServer, Scripted

    prompts = [[{"role": "user", "content": "Capital of France?"}]] * 4
    with OpenAIServer(api_key=KEY) as server, caplog.at_level(logging.INFO):
        reward = judge_reward(monkeypatch, server, max_concurrency=1, max_retries=1, max_ungraded_share=0.25)
        # Row 0: a 503, retried, then graded. Row 1: a reply without a grade that echoes the key.
        server.queue(Scripted(status=503), Scripted(), Scripted(reply=f"cannot grade {KEY}"))
        rewards = reward(prompts, ["Paris", "Paris", "Lyon", "Paris"], reference=["Paris"] * 4)
        assert rewards == pytest.approx([1.0, 0.0, 1 / 9, 1.0])  # the ungraded answer counts 0
        assert len(server.requests) == 5  # four answers and one retry
        # Two of four ungraded is more than the 25% allowed: the step fails with the judge's message.
        server.queue(Scripted(reply=f"no idea {KEY}"), Scripted(reply="no idea"))
        with pytest.raises(
            JudgeError, match=r"graded 2 of 4 rows, more than scoring\.judge\.max_ungraded_share"
        ) as e:
            reward(prompts, ["Paris"] * 4, reference=["Paris"] * 4)
    assert "row 0: no grade 1-10 in the reply 'no idea ***'" in str(e.value)
    assert KEY not in str(e.value) and KEY not in caplog.text
    assert "row 1: no grade 1-10 in the reply 'cannot grade ***'" in caplog.text


def test_grpo_training_with_the_judge_grades_each_batch_concurrently(monkeypatch, tmp_path):
    """Through TRL: one GRPO step of 8 generated answers, max_concurrency 8, each request slow: the
    server holds all 8 at once, and TRL logs the judge's reward."""
    from tasks.config.scoring import JudgeConfig, ScoringConfig
    from tests.fixtures.openai_server import OpenAIServer, Scripted, connection_json

    job = word_job(
        tmp_path,
        "lora",
        batch_size=8,
        micro_batch_size=8,
        max_steps=1,
        grpo_reward="llm_judge",
        grpo_num_generations=8,
        grpo_max_completion_length=1,
    )
    judge = JudgeConfig(backoff_s=0, timeout_s=5, max_concurrency=8)
    scoring = ScoringConfig(metrics=["llm_judge"], primary="llm_judge", judge=judge)
    with OpenAIServer(api_key=KEY) as server:
        monkeypatch.setenv("AIRFLOW_CONN_TUNERFLOW_JUDGE", connection_json(server))
        server.queue(*[Scripted(delay_s=0.5) for _ in range(8)])
        trainer, _ = trainer_for(job.model_copy(update={"scoring": scoring}), tmp_path)
        trainer.train()
    assert len(server.requests) == 8
    assert server.max_in_flight == 8
    logged = [e["rewards/llm_judge/mean"] for e in trainer.state.log_history if "rewards/llm_judge/mean" in e]
    assert len(logged) == 1 and 1 / 9 - 1e-6 <= logged[0] <= 1.0, logged
