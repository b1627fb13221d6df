"""compare_models: the spec `plan_compare` writes (every model resolved to what the step loads, the prompts
or the eval set to draw them from, the generation settings) and the result the step commits.

A comparison lives under `compare/<slug(run_id)>/` in the store: `spec.json` (this spec) and `results/`
(the step's committed output, `results.json` beside `manifest.json`).
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from tasks.config.catalog import CatalogEntry
from tasks.contracts.base import Contract, OpenContract
from tasks.contracts.prepare import PreparedDataset

# A comparison's two parts under its prefix (`tasks.storage.layout.comparison`; see the module docstring).
SPEC_FILE = "spec.json"
# Prepared rows that hold prompts to ask; a text dataset has none.
ASKABLE_KINDS = ("chat", "preference", "unpaired")
RESULTS_DIR = "results"
RESULTS_FILE = "results.json"

ModelKind = Literal["pytorch", "onnx", "endpoint"]


class GenerationSettings(Contract):
    """How every model answers: the same settings for all, so the numbers compare."""

    max_new_tokens: int = Field(128, ge=1, le=4096, description="Most tokens an answer may have.")
    temperature: float = Field(0.0, ge=0.0, le=2.0, description="0 is greedy; above 0 samples.")
    top_p: float = Field(1.0, gt=0.0, le=1.0, description="Nucleus sampling mass, when sampling.")
    seed: int = Field(0, ge=0, description="Seed of the sampler, the same for every model.")


class CompareModel(Contract):
    """One model as the step loads it. `pytorch`: `entry` (the base model), with `adapter_uri` (LoRA) or
    `model_uri` (full weights) over it; `onnx`: an exported directory `onnx_uri` (ONNX Runtime, CPU);
    `endpoint`: an OpenAI-compatible API behind the Airflow connection `conn_id`, whose key reaches the
    step in its environment only."""

    label: str = Field(description="The column header: unique within a comparison.")
    source: str = Field(description="What the user chose, in words (`registry tuna v2`, `catalog ...`).")
    kind: ModelKind = Field(description="How it is run: pytorch, onnx or endpoint.")
    entry: CatalogEntry | None = Field(None, description="The base model (pytorch).")
    adapter_uri: str | None = Field(None, description="A LoRA adapter merged over `entry` (pytorch).")
    model_uri: str | None = Field(None, description="Full weights replacing `entry`'s (pytorch).")
    onnx_uri: str | None = Field(None, description="The exported ONNX directory (onnx).")
    conn_id: str | None = Field(None, description="The Airflow connection of the endpoint (endpoint).")
    endpoint_model: str | None = Field(
        None, description="The model name sent to the endpoint; the connection's extra.model when unset."
    )
    temperature: float | None = Field(
        None, ge=0.0, le=2.0, description="This model's own temperature, over the shared settings'."
    )

    @model_validator(mode="after")
    def _has_what_its_kind_needs(self) -> CompareModel:
        needs = {"pytorch": self.entry, "onnx": self.onnx_uri, "endpoint": self.conn_id}[self.kind]
        if needs is None:
            field = {"pytorch": "entry", "onnx": "onnx_uri", "endpoint": "conn_id"}[self.kind]
            raise ValueError(f"a {self.kind} model needs `{field}`")
        if self.adapter_uri and self.model_uri:
            raise ValueError("give adapter_uri (LoRA) or model_uri (full weights), not both")
        return self


class ComparePrompt(Contract):
    """One question every model answers."""

    id: str = Field(description="`typed-<n>` for a typed prompt, the row id for an eval set row.")
    messages: list[dict[str, str]] = Field(description="The chat turns up to the answer.")
    reference: str | None = Field(None, description="The eval set's reference answer, if any.")


class EvalSetRows(Contract):
    """Prompts drawn from a prepared dataset's held-out rows (its test split, else validation)."""

    dataset: PreparedDataset = Field(description="The prepared dataset version.")
    limit: int = Field(ge=1, description="Rows taken, from the start of the split.")
    source: str = Field(description="What the user chose, in words.")


class CompareSpec(Contract):
    """What `python -m tasks.compare_models` reads."""

    step: Literal["compare_models"] = Field("compare_models", description="The step this spec is for.")
    store_root: str = Field(description="Root URI of the artifact store.")
    output: str = Field(description="Prefix the step writes and commits (`compare/<run>/results`).")
    run_id: str = Field(description="The compare_models DAG run.")
    models: list[CompareModel] = Field(min_length=2, max_length=4, description="The models, in order.")
    prompts: list[ComparePrompt] = Field(default_factory=list, description="Typed-in prompts.")
    eval_set: EvalSetRows | None = Field(None, description="Prompts from an eval set, after the typed ones.")
    generation: GenerationSettings = Field(description="The generation settings every model uses.")

    @property
    def connections(self) -> list[str]:
        """The Airflow connections the step needs in its environment (the endpoints'), each once."""
        return list(dict.fromkeys(m.conn_id for m in self.models if m.kind == "endpoint" and m.conn_id))


class Answer(Contract):
    """One model's answer to one prompt, with what it cost."""

    prompt_id: str = Field(description="The prompt answered.")
    text: str = Field("", description="The answer (empty when it failed).")
    prompt_tokens: int | None = Field(None, description="Tokens of the prompt as the model saw it.")
    completion_tokens: int | None = Field(None, description="Tokens generated.")
    ttft_s: float | None = Field(None, description="Seconds from the request to the first generated token.")
    tokens_per_s: float | None = Field(
        None, description="Decode rate: tokens after the first, per second after the first token."
    )
    latency_s: float | None = Field(None, description="Seconds from the request to the last token.")
    error: str | None = Field(None, description="Why there is no answer.")


class ModelAnswers(Contract):
    """A model's column: how it was loaded and its answers, in prompt order."""

    label: str = Field(description="The column header.")
    source: str = Field(description="What the user chose, in words.")
    kind: ModelKind = Field(description="How it was run.")
    temperature: float = Field(description="The temperature it answered with.")
    load_s: float | None = Field(None, description="Seconds to load it (none for an endpoint).")
    answers: list[Answer] = Field(default_factory=list, description="One per prompt, in prompt order.")
    error: str | None = Field(None, description="Why it gave no answers (could not load or reach it).")


class CompareResult(OpenContract):
    """What the step commits (and writes to `results.json`)."""

    run_id: str = Field(description="The compare_models DAG run.")
    prompts: list[ComparePrompt] = Field(description="Every prompt answered, in order.")
    models: list[ModelAnswers] = Field(description="One column per model, in the conf's order.")
    generation: GenerationSettings = Field(description="The shared generation settings.")
    device: str = Field(description="Where the local models ran (cpu, cuda).")
    finished_at: str = Field(description="When the comparison finished (UTC, ISO 8601).")
