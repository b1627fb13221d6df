"""LLM as judge: a judge model grades each answer against its question and reference, 1-10, read as 0-1.

    scoring:
      metrics: [rouge_l, llm_judge]
      primary: llm_judge
      judge:                       # all optional
        conn_id: tunerflow_judge   # the Airflow connection of the endpoint
        model: gpt-4o-mini         # else the connection's extra.model
        max_concurrency: 4

For every held-out row the judge model, behind any OpenAI-compatible `POST {base_url}/chat/completions`
endpoint (OpenAI, Azure OpenAI's v1 API, vLLM, Ollama, llama.cpp server, LiteLLM, ...), gets a rubric
as the system message and the row's question (the last user turn), reference answer and the model's
answer as tagged data, at temperature 0, and replies `{"grade": <1-10>, "reason": ...}`. A row scores
(grade - 1) / 9; the metric is the mean over the rows. Higher is better.

The endpoint's address and key are an Airflow connection, `scoring.judge.conn_id` (default
`tunerflow_judge`): host (or `extra.base_url`) = the API root before `/chat/completions`, e.g.
`https://api.openai.com/v1`; password = the API key (none for a keyless local server); `extra.model` =
the default judge model (`scoring.judge.model` wins); `extra.headers` = extra HTTP headers:

    airflow connections add tunerflow_judge --conn-type http --conn-host https://api.openai.com/v1 \\
        --conn-password "$OPENAI_API_KEY" --conn-extra '{"model": "gpt-4o-mini"}'

The evaluate task resolves it on the worker and hands it to the step process in the environment
variable `AIRFLOW_CONN_TUNERFLOW_JUDGE` (never in a log, XCom or job spec). Kubernetes pods get the same
variable from a Secret listed in `env_from_secrets`. See docs/scoring.md, "LLM as judge".

The questions, reference answers and answers of the test rows are sent to that endpoint: data leaves
the cluster unless the endpoint runs inside it.

Calls: `max_concurrency` rows at a time, `timeout_s` per request, `max_retries` retries with exponential
backoff (`backoff_s`, the server's Retry-After wins) on 429, 5xx, timeouts and dropped connections.
A refused key (401), a refused model (403), a wrong URL or model (404) or an unreachable host stops
the metric at once with a message naming the connection. A row that still gets no grade (no grade
1-10 in the reply, or failing after its retries) counts as 0 and is logged by row index; if more than
`max_ungraded_share` (default 10%) of the rows are ungraded the metric fails instead, since its value
would then measure the endpoint rather than the model.

This module declares a third input, `questions`, besides predictions and references; tunerflow's
`tasks.scoring.metrics.score()` passes it only to metrics that declare it. The client lives in
`tasks/scoring/judge_client.py`.
"""

from __future__ import annotations

import datasets
import evaluate

GREATER_IS_BETTER = True

_DESCRIPTION = """
The mean grade a judge model behind an OpenAI-compatible chat completions endpoint gives the answers,
each graded 1-10 against its question and reference answer and normalised to (grade - 1) / 9, so 0-1.
The endpoint comes from an Airflow connection (see tasks/scoring/judge_connection.py); keyword
arguments are the fields of tunerflow's JudgeConfig (scoring.judge in an experiment conf).
"""

_KWARGS_DESCRIPTION = """
Args:
    predictions (list of str): the generated answers.
    references (list of str): one reference answer per prediction.
    questions (list of str): the question each answer replies to (the row's last user turn).
    **judge: JudgeConfig fields: conn_id, model, max_concurrency, timeout_s, max_retries, backoff_s,
        max_tokens, rubric, max_ungraded_share.
Returns:
    llm_judge (float, 0-1): the mean normalised grade; an ungraded row counts 0.
    llm_judge_ungraded (int): how many rows got no grade.
    llm_judge_rows (list of float): each row's normalised grade, in row order (0 for an ungraded row);
        GRPO rewards each generated answer with it.
Examples:
    >>> # with AIRFLOW_CONN_TUNERFLOW_JUDGE set to the endpoint's connection
    >>> metric = evaluate.load("plugins/scoring/llm_judge/llm_judge.py")
    >>> metric.compute(predictions=["Paris."], references=["Paris"], questions=["Capital of France?"])
    {'llm_judge': 1.0, 'llm_judge_ungraded': 0, 'llm_judge_rows': [1.0]}
"""


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class LlmJudge(evaluate.Metric):
    def _info(self) -> evaluate.MetricInfo:
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation="",
            inputs_description=_KWARGS_DESCRIPTION,
            features=datasets.Features(
                {
                    "predictions": datasets.Value("string"),
                    "references": datasets.Value("string"),
                    "questions": datasets.Value("string"),
                }
            ),
        )

    def _compute(
        self, predictions: list[str], references: list[str], questions: list[str], **judge: object
    ) -> dict[str, float]:
        # evaluate copies only this file into its module cache; the client is tunerflow's, which the
        # trainer image installs.
        from tasks.config.scoring import JudgeConfig
        from tasks.scoring.judge import judge as grade

        return grade(questions, predictions, references, JudgeConfig.model_validate(judge))
