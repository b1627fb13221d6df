"""The LLM judge's HTTP client: OpenAI-compatible `POST {base_url}/chat/completions`, many rows at once.

Retries timeouts, dropped connections, 429 and 5xx with exponential backoff and the server's Retry-After;
stops every row at once when the endpoint itself is unusable (key refused, wrong URL or model,
unreachable), and scrubs the API key from every message it writes. It knows chat completions, not grades:
`tasks.scoring.judge` builds the prompts and reads the replies.

Stdlib and pydantic at import: the Airflow worker imports the scoring package. `requests` (with urllib3's
retries) is imported when calling.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from typing import Any

from tasks.config.scoring import JudgeConfig
from tasks.scoring.judge_connection import JudgeEndpoint, JudgeError, shown
from tasks.storage.connections import env_var

# What the OpenAI SDK retries too: timeouts, lock conflicts, rate limits and server errors.
RETRY_STATUSES = frozenset({408, 409, 429, *range(500, 600)})
MAX_WAIT_S = 120  # cap of one backoff wait and of a server's Retry-After

Messages = list[dict[str, str]]


class _NoReply(Exception):
    """One row got no reply; the message says why (no row text, no key)."""


def _session(config: JudgeConfig) -> Any:
    """A requests session whose urllib3 layer retries timeouts, dropped connections, 429 and 5xx, with
    exponential backoff and the server's Retry-After (both capped at MAX_WAIT_S)."""
    import requests  # with urllib3: only when the judge is called
    from requests.adapters import HTTPAdapter
    from urllib3.util.retry import Retry

    retry = Retry(
        total=config.max_retries,
        allowed_methods=None,  # POST too: a grading call has no side effect
        status_forcelist=RETRY_STATUSES,
        backoff_factor=config.backoff_s,
        backoff_max=MAX_WAIT_S,
        retry_after_max=MAX_WAIT_S,
        raise_on_status=False,  # hand back the last response, so its status is reported
    )
    session = requests.Session()
    # One session for every thread: urllib3's pool is thread-safe and no state (cookies, auth) changes.
    adapter = HTTPAdapter(max_retries=retry, pool_connections=1, pool_maxsize=config.max_concurrency)
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    return session


def _cannot_connect(error: Exception) -> bool:
    """Whether the request never reached the server (refused, unknown name, connect timeout), as opposed
    to a reply that was late or cut off."""
    import requests  # with urllib3: only when the judge is called
    from urllib3.exceptions import ConnectTimeoutError  # NewConnectionError and NameResolutionError too

    if isinstance(error, requests.ConnectTimeout):
        return True
    cause = error.args[0] if error.args else None  # requests wraps urllib3's MaxRetryError
    return isinstance(error, requests.ConnectionError) and isinstance(
        getattr(cause, "reason", cause), ConnectTimeoutError
    )


class JudgeClient:
    """Chat completions through one endpoint; `ask_all` returns one reply (or None) per conversation."""

    def __init__(self, endpoint: JudgeEndpoint, config: JudgeConfig) -> None:
        self.endpoint = endpoint
        self.config = config
        self.model = config.model or endpoint.model
        if not self.model:
            raise JudgeError(
                f"scoring.judge.model: no judge model given; set scoring.judge.model in the conf, or "
                f"\"model\" in the extra of Airflow connection '{endpoint.conn_id}'"
            )
        self.url = endpoint.chat_url
        self.headers = endpoint.request_headers()
        self.scrub = endpoint.scrub

    def ask_all(self, conversations: Sequence[Messages]) -> tuple[list[Any], dict[int, str]]:
        """Replies in row order, and why each row without one got none (by row index). A JudgeError (key
        refused, URL or model wrong, endpoint unreachable) stops every row."""
        replies: list[Any] = [None] * len(conversations)
        problems: dict[int, str] = {}
        session = _session(self.config)
        stop = threading.Event()

        def one(messages: Messages) -> Any:
            # A worker sets `stop` before it takes another row, so after a fatal error no row is sent.
            if stop.is_set():
                return None
            try:
                return self.ask(session, messages)
            except JudgeError:
                stop.set()
                raise

        pool = ThreadPoolExecutor(max_workers=self.config.max_concurrency, thread_name_prefix="judge")
        try:
            futures = {pool.submit(one, messages): index for index, messages in enumerate(conversations)}
            for future in as_completed(futures):
                index = futures[future]
                try:
                    replies[index] = future.result()
                except _NoReply as reason:
                    problems[index] = str(reason)
        finally:
            pool.shutdown(wait=True, cancel_futures=True)
            session.close()
        return replies, problems

    def ask(self, session: Any, messages: Messages) -> Any:
        """The content of the judge's reply to `messages`."""
        import requests  # only when the judge is called

        body = {
            "model": self.model,
            "messages": messages,
            "temperature": 0,  # the same answer gets the same grade in every job
            "max_tokens": self.config.max_tokens,
        }
        try:
            response = session.post(self.url, json=body, headers=self.headers, timeout=self.config.timeout_s)
        except requests.RequestException as error:
            if _cannot_connect(error):  # every other row would wait for the same dead address
                raise JudgeError(
                    f"cannot reach the judge at {shown(self.url)} (Airflow connection "
                    f"'{self.endpoint.conn_id}'), {self.tries}: {self.scrub(str(error))[:300]}"
                ) from None
            if isinstance(error, requests.Timeout) or "timed out" in str(error):
                raise _NoReply(f"no reply within {self.config.timeout_s} s, {self.tries}") from None
            raise _NoReply(f"{type(error).__name__}, {self.tries}: {self.scrub(str(error))[:200]}") from None
        return self._read(response)

    @property
    def tries(self) -> str:
        return f"{self.config.max_retries + 1} tries"

    def _read(self, response: Any) -> Any:
        status = response.status_code
        conn = f"Airflow connection '{self.endpoint.conn_id}'"
        if status == 401:  # no body in the message: OpenAI echoes part of the key it refused
            raise JudgeError(
                f"the judge at {shown(self.url)} refused the API key (HTTP 401): the password of {conn} is "
                f"missing, wrong or expired; update the connection ({env_var(self.endpoint.conn_id)} or "
                "`airflow connections`, and the Kubernetes Secret if pods read it)"
            )
        if status == 403:
            raise JudgeError(
                f"the judge at {shown(self.url)} refused access (HTTP 403): the key of {conn} may not use "
                f"model '{self.model}'"
            )
        if status == 404:
            raise JudgeError(
                f"HTTP 404 from {shown(self.url)}: the base URL of {conn} should be the API root that "
                f"/chat/completions follows (e.g. https://api.openai.com/v1), and model '{self.model}' must "
                f"exist there (scoring.judge.model or the connection's extra.model): {self._body(response)}"
            )
        if status != 200:
            retried = f", {self.tries}" if status in RETRY_STATUSES else ""
            raise _NoReply(f"HTTP {status}{retried}: {self._body(response)}")
        try:
            return response.json()["choices"][0]["message"]["content"]
        except (ValueError, KeyError, IndexError, TypeError):
            raise _NoReply(f"not a chat completion: {self._body(response)}") from None

    def _body(self, response: Any) -> str:
        return self.scrub(" ".join(response.text.split()))[:300]
