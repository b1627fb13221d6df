"""How every job is scored: the metrics, the primary one that picks the winner, generation settings, an
optional separate eval set or fixed questions, and the `llm_judge` metric's settings.

Metric names are checked against the scoring plugins found on disk (`tasks.scoring.plugins` lists
directories and imports nothing heavy).
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator

from tasks.config.base import StrictModel
from tasks.config.dataset import DatasetConfig
from tasks.scoring import plugins as scoring_plugins


class EvalQuestion(StrictModel):
    """One fixed question with its expected answer, scored like a held-out row."""

    question: str = Field(min_length=1, description="The user turn the model answers.")
    answer: str = Field(
        min_length=1, description="The expected answer: the reference the metrics compare to."
    )
    system: str | None = Field(None, description="An optional system prompt before the question.")


class JudgeConfig(StrictModel):
    """The `llm_judge` metric's settings; the endpoint's address and key come from an Airflow connection."""

    conn_id: str = Field(
        "tunerflow_judge",
        pattern=r"^[A-Za-z][A-Za-z0-9_]{0,199}$",
        description="Airflow connection of the OpenAI-compatible judge endpoint: host (or extra.base_url) "
        "is the base URL, e.g. https://api.openai.com/v1; password is the API key; extra.model the default "
        "model. Letters, digits and _ only, so that AIRFLOW_CONN_<CONN_ID> is a valid environment variable.",
    )
    model: str | None = Field(
        None, min_length=1, description="The judge model; overrides the connection's extra.model."
    )
    max_concurrency: int = Field(4, ge=1, le=64, description="Rows graded at the same time (threads).")
    timeout_s: float = Field(60.0, gt=0, le=600, description="Seconds one request may take before a retry.")
    max_retries: int = Field(
        4, ge=0, le=10, description="Retries of one row on HTTP 429, 5xx, timeouts and dropped connections."
    )
    backoff_s: float = Field(
        2.0,
        ge=0,
        le=60,
        description="Exponential backoff factor: retry n waits backoff_s * 2^(n-1) s (the first retry is "
        "immediate), or the server's Retry-After, at most 120 s.",
    )
    max_tokens: int = Field(
        256, ge=16, le=8192, description="Completion budget of one grading reply (a grade and a reason)."
    )
    rubric: str | None = Field(
        None,
        min_length=1,
        description="Grading instructions sent as the system message instead of the built-in rubric; the "
        'reply format ({"grade": 1-10, "reason": ...}) is always appended.',
    )
    max_ungraded_share: float = Field(
        0.1,
        ge=0,
        le=1,
        description="Rows the judge could not grade (no parsable grade, or still failing after the "
        "retries) count as 0; above this share of the rows the metric fails instead.",
    )


class ScoringConfig(StrictModel):
    metrics: list[str] = Field(
        default_factory=lambda: ["exact_match", "rouge_l"],
        description="Metrics computed for every job on the test split: exact_match, token_f1, accuracy "
        "(multiple-choice labels), bleu, rouge_l, composite (0.75 rouge_l + 0.25 bleu), eval_loss and "
        "perplexity (from the answer loss), or a scoring plugin's name (plugins/scoring, "
        "$TUNERFLOW_SCORING_PLUGINS).",
        min_length=1,
    )
    primary: str = Field(
        "rouge_l",
        description="The metric that picks the winner: the highest wins, except for eval_loss, perplexity "
        "and plugins that declare GREATER_IS_BETTER = False, where the lowest wins.",
    )
    max_new_tokens: int = Field(48, ge=1, le=4096, description="Generation budget per answer.")
    temperature: float = Field(
        0.0,
        ge=0,
        le=5,
        description="0 (the default) decodes greedily, so scores are reproducible; above 0 samples with "
        "this temperature, top_p and seed.",
    )
    top_p: float = Field(1.0, gt=0, le=1, description="Nucleus sampling mass, when temperature > 0.")
    seed: int = Field(0, ge=0, description="Sampling seed, when temperature > 0: the same for every job.")
    batch_size: int = Field(16, ge=1, description="Rows per generation batch.")
    max_samples: int | None = Field(None, ge=1, description="Score at most this many test rows.")
    eval_dataset: DatasetConfig | None = Field(
        None,
        description="A separate eval set: every job, base model and champion is scored on all its rows "
        "instead of each training dataset's test split (its `split` is not used), and training rows whose "
        "prompt overlaps one of its prompts are dropped. Give `uri`, `sources` or `registered`.",
    )
    eval_questions: list[EvalQuestion] = Field(
        default_factory=list,
        description="A fixed list of questions with expected answers, scored instead of the test split "
        "(training rows overlapping them are dropped). Not together with eval_dataset.",
    )
    rank_on: Literal["pytorch", "onnx-int8"] = Field(
        "pytorch",
        description="Which score picks the winner: the PyTorch model's, or the score of each job's INT8 "
        "ONNX export (every successful job is exported and scored again), so that the winner is the best "
        "model as deployed. Both are on the leaderboard.",
    )
    compare_base: bool = Field(
        True, description="Also score each base model untouched, as a reference row on the leaderboard."
    )
    judge: JudgeConfig = Field(
        default_factory=JudgeConfig,
        description="Settings of the llm_judge metric (used only when scoring.metrics lists llm_judge).",
    )

    # Names, not a Literal: scoring plugins add metrics, found by listing directories (no evaluate import).
    @field_validator("metrics")
    @classmethod
    def _known_metrics(cls, value: list[str]) -> list[str]:
        unknown = [name for name in value if name not in scoring_plugins.metric_names()]
        if unknown:
            raise ValueError(scoring_plugins.unknown_message(*unknown))
        return value

    @field_validator("primary")
    @classmethod
    def _known_primary(cls, value: str) -> str:
        if value not in scoring_plugins.metric_names():
            raise ValueError(scoring_plugins.unknown_message(value))
        return value
