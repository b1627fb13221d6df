"""Timing one streamed answer: the clock starts when the request is made, the first generated token
marks the time to first token, the last one the latency; the decode rate counts the tokens after the
first over the time after it (the first token's time is the prompt's processing, reported as TTFT)."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from tasks.contracts.compare import Answer


@dataclass
class Clock:
    started: float = field(default_factory=time.perf_counter)
    first_token_at: float | None = None
    finished_at: float | None = None

    def token(self) -> None:
        if self.first_token_at is None:
            self.first_token_at = time.perf_counter()

    def stop(self) -> None:
        self.finished_at = time.perf_counter()

    def answer(
        self, prompt_id: str, text: str, prompt_tokens: int | None, completion_tokens: int | None
    ) -> Answer:
        end = self.finished_at or time.perf_counter()
        first = self.first_token_at
        rate = None
        if first is not None and completion_tokens and completion_tokens > 1 and end > first:
            rate = round((completion_tokens - 1) / (end - first), 2)
        return Answer(
            prompt_id=prompt_id,
            text=text.strip(),
            prompt_tokens=prompt_tokens,
            completion_tokens=completion_tokens,
            ttft_s=round(first - self.started, 4) if first is not None else None,
            tokens_per_s=rate,
            latency_s=round(end - self.started, 4),
        )
