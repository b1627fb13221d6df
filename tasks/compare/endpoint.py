"""An OpenAI-compatible endpoint as a compared model: `POST {base_url}/chat/completions` with
`stream=True`, timed from the request to the first content chunk (time to first token) and to the last.

The endpoint is an Airflow connection read the way the LLM judge reads its own
(`tasks.scoring.judge_connection`): the worker puts `AIRFLOW_CONN_<ID>` in this step's environment (a pod
gets it from a Secret), and the key goes into the Authorization header only; it is scrubbed from every
error message and never written anywhere.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from typing import Any

from tasks.compare.timing import Clock
from tasks.contracts.compare import Answer, CompareModel, ComparePrompt, GenerationSettings
from tasks.runtime.errors import StepError
from tasks.scoring.judge_connection import JudgeEndpoint, JudgeError, endpoint, how_to_create, shown
from tasks.storage.connections import env_var

TIMEOUT_S = 300  # a long answer from a slow server; the connect part fails fast anyway


class Endpoint:
    """One endpoint's chat completions, streamed."""

    def __init__(self, model: CompareModel) -> None:
        assert model.conn_id is not None
        value = os.environ.get(env_var(model.conn_id))
        if not value:
            raise StepError(
                f"the endpoint's Airflow connection '{model.conn_id}' is not in this step's environment "
                f"({env_var(model.conn_id)}); with the kubernetes backend put it in a Secret listed in "
                f"env_from_secrets, otherwise {how_to_create(model.conn_id)}"
            )
        try:
            self.endpoint: JudgeEndpoint = endpoint(model.conn_id, value)
        except JudgeError as error:
            raise StepError(str(error)) from None
        self.model = model.endpoint_model or self.endpoint.model
        if not self.model:
            raise StepError(
                f"no model name for connection '{model.conn_id}': set `model` in the conf, or "
                '"model" in the connection\'s extra'
            )
        self.url = self.endpoint.chat_url
        self.headers = self.endpoint.request_headers()
        self.scrub = self.endpoint.scrub

    def _events(self, response: Any) -> Iterator[dict[str, Any]]:
        """The server-sent events' JSON payloads, up to `[DONE]`."""
        for line in response.iter_lines(decode_unicode=True):
            if not line or not line.startswith("data:"):
                continue
            data = line[len("data:") :].strip()
            if data == "[DONE]":
                return
            yield json.loads(data)

    def answer(self, prompt: ComparePrompt, settings: GenerationSettings, temperature: float) -> Answer:
        import requests  # only when an endpoint is compared

        body = {
            "model": self.model,
            "messages": prompt.messages,
            "max_tokens": settings.max_new_tokens,
            "temperature": temperature,
            "top_p": settings.top_p,
            "seed": settings.seed,
            "stream": True,
            # Servers that know it send the token counts in a last chunk; others are counted by chunk.
            "stream_options": {"include_usage": True},
        }
        clock = Clock()
        pieces: list[str] = []
        chunks = 0
        usage: dict[str, Any] = {}
        try:
            with requests.post(
                self.url, json=body, headers=self.headers, stream=True, timeout=(10, TIMEOUT_S)
            ) as response:
                if response.status_code != 200:
                    detail = self.scrub(response.text)[:300]
                    raise StepError(f"{shown(self.url)} answered {response.status_code}: {detail}")
                for event in self._events(response):
                    usage = event.get("usage") or usage
                    for choice in event.get("choices") or []:
                        content = (choice.get("delta") or {}).get("content")
                        if content:
                            clock.token()
                            pieces.append(content)
                            chunks += 1
        except requests.RequestException as error:
            raise StepError(f"cannot reach {shown(self.url)}: {self.scrub(str(error))[:300]}") from None
        clock.stop()
        return clock.answer(
            prompt.id,
            "".join(pieces),
            usage.get("prompt_tokens"),
            usage.get("completion_tokens", chunks),
        )
