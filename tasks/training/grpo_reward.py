"""GRPO: TRL's GRPOTrainer on chat rows, rewarded by one of the experiment's scoring metrics.

A chat row becomes a prompt (the conversation before its last assistant turn) and a reference (that
turn), as the evaluate step splits it (`tasks.scoring.generation.prompt_and_reference`), so the datasets
SFT trains on train GRPO too. TRL generates `grpo_num_generations` answers per prompt and calls the
reward with them and the rows' references; each answer gets its own value of the same metric module the
evaluate step ranks with (`tasks.scoring.metrics.row_values`): exact_match, token_f1, keyword_hit or a
scoring plugin score each answer alone; llm_judge grades the whole batch at once through the evaluate
step's client, `scoring.judge.max_concurrency` answers at a time, with its retries and its share of
ungraded answers (more fails the step), over the connection the worker hands the step. A metric whose
lower values are better is negated, so a higher reward is always better.

Heavy imports (trl, datasets) stay inside functions.
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Callable, Mapping
from typing import Any

from tasks.runtime.errors import StepError
from tasks.scoring import metrics as scoring_metrics
from tasks.scoring import plugins as scoring_plugins
from tasks.scoring.generation import prompt_and_reference

log = logging.getLogger("tunerflow.train")


def grpo_rows(rows: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    """`{"prompt": [messages], "reference": str}` per chat row whose last turn is an assistant answer."""
    if kind != "chat":
        raise StepError(f"grpo trains on chat rows, not {kind} rows")
    out = []
    for row in rows:
        prompt, reference = prompt_and_reference(row)
        if row["messages"][-1]["role"] == "assistant" and prompt:
            out.append({"prompt": prompt, "reference": reference})
    if rows and not out:
        raise StepError("grpo: no chat row ends with an assistant answer to reward against")
    return out


def answer_text(completion: Any) -> str:
    """A TRL completion as text: a string, or the conversational form (a list of assistant messages)."""
    if isinstance(completion, str):
        return completion
    return "".join(str(message.get("content") or "") for message in completion)


def metric_reward(metric: str, options: Mapping[str, Any] | None = None) -> Callable[..., list[float]]:
    """The reward function TRL calls: each completion's value of text metric `metric` against its row's
    `reference`, in order (`options`: the metric's keyword arguments, e.g. the judge settings)."""
    spec = scoring_plugins.get(metric)  # ScoringPluginError (a ValueError) naming the known metrics
    if spec.kind != "text":
        raise StepError(f"grpo_reward '{metric}' comes from the model's loss; reward with a text metric")
    sign = 1.0 if spec.greater_is_better else -1.0

    def reward(prompts: list[Any], completions: list[Any], reference: list[str], **_: Any) -> list[float]:
        questions = scoring_metrics.questions_of(
            [p if isinstance(p, list) else [{"role": "user", "content": p}] for p in prompts]
        )
        answers = [answer_text(completion) for completion in completions]
        values = scoring_metrics.row_values(metric, answers, reference, questions, options)
        return [sign * value for value in values]

    reward.__name__ = metric  # TRL logs each reward function's mean as rewards/<__name__>/mean
    return reward


def drop_unused_inputs(tokenizer: Any, model: Any) -> None:
    """TRL hands `generate` everything the tokenizer returns; a tokenizer that returns token_type_ids
    for a model whose forward takes none (a Llama with a generic fast tokenizer) makes it refuse."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    if "token_type_ids" not in inspect.signature(base.forward).parameters:
        names = [name for name in tokenizer.model_input_names if name != "token_type_ids"]
        tokenizer.model_input_names = names


def build_grpo_trainer(
    model: Any,
    tokenizer: Any,
    peft_config: Any,
    args: dict[str, Any],
    data: tuple[list[dict[str, Any]], list[dict[str, Any]], str],
    reward: str,
    options: Mapping[str, Any] | None,
    callbacks: list[Any],
) -> Any:
    """TRL's GRPOTrainer rewarded by metric `reward`; `args` as for the preference types."""
    from datasets import Dataset
    from trl import GRPOConfig, GRPOTrainer

    train_rows, eval_rows, kind = data
    train, evaluation = grpo_rows(train_rows, kind), grpo_rows(eval_rows, kind)
    drop_unused_inputs(tokenizer, model)
    log.info("grpo: rewarding %d prompts with metric '%s'", len(train), reward)
    # Evaluation generates whole groups too: its batch must hold a multiple of num_generations answers.
    group = args["num_generations"]
    eval_batch = group * max(1, args["per_device_eval_batch_size"] // group)
    config = GRPOConfig(**{**args, "per_device_eval_batch_size": eval_batch})
    return GRPOTrainer(
        model=model,
        reward_funcs=metric_reward(reward, options),
        args=config,
        train_dataset=Dataset.from_list(train),
        eval_dataset=Dataset.from_list(evaluation) if evaluation else None,
        processing_class=tokenizer,
        peft_config=peft_config,
        callbacks=callbacks,
    )
