"""The Compare pages' data: the form's choices (registry versions and their INT8 exports, catalog models,
recent experiment jobs and exports, eval sets), the past comparisons, and one comparison's answers side
by side with their numbers, all read from the store.

A comparison lives under `compare/<slug(run_id)>/` (tasks.contracts.compare): `spec.json` once planned,
`error.json` when its conf was refused, `results/` (error.json while failed, manifest + results.json once
done). Its state here is what those files say; the route may add Airflow's own state of the run.
"""

from __future__ import annotations

import json
from typing import Any, Literal

from pydantic import BaseModel, Field

from tasks.config.catalog import models as catalog_models
from tasks.console.charts import Chart, Series
from tasks.console.reading import read_json
from tasks.contracts.compare import (
    ASKABLE_KINDS,
    RESULTS_DIR,
    SPEC_FILE,
    Answer,
    CompareResult,
    CompareSpec,
    GenerationSettings,
)
from tasks.contracts.planning import PlannedJob
from tasks.registry import versions as registry
from tasks.storage import layout, store

RECENT_RUNS = 10  # experiment runs whose jobs the form offers
State = Literal["queued", "running", "success", "failed"]


class Option(BaseModel):
    """One choice of a select: its value is the conf's JSON for it."""

    value: str = Field(description="The choice as JSON, as the compare_models conf takes it.")
    text: str = Field(description="What the option shows.")


class OptionGroup(BaseModel):
    label: str = Field(description="The group's heading in the select.")
    options: list[Option] = Field(description="Its choices.")


class ComparisonSummary(BaseModel):
    """One past comparison in the list."""

    run_id: str = Field(description="The compare_models run id.")
    state: State = Field(description="What the store says: running, success or failed.")
    models: list[str] = Field(description="The column labels.")
    first_prompt: str = Field(description="The first question asked (empty when refused).")
    when: str | None = Field(description="When it was last written (UTC).")


class CompareForm(BaseModel):
    """The Compare page: what can be chosen, the defaults, and the past comparisons."""

    models: list[OptionGroup] = Field(description="Model choices by kind.")
    eval_sets: list[OptionGroup] = Field(description="Eval set choices by kind.")
    defaults: GenerationSettings = Field(description="The generation settings' defaults.")
    past: list[ComparisonSummary] = Field(description="Past comparisons, newest first.")


class Column(BaseModel):
    """A model's column header."""

    label: str = Field(description="The model's label.")
    source: str = Field(description="What was chosen, in words.")
    kind: str = Field(description="pytorch, onnx or endpoint.")
    temperature: float | None = Field(description="The temperature it answered with.")
    load_s: float | None = Field(description="Seconds to load it.")
    error: str | None = Field(description="Why it gave no answers.")


class PromptRow(BaseModel):
    """One question and every model's answer to it, in column order."""

    prompt_id: str = Field(description="The prompt's id.")
    question: str = Field(description="The last user turn.")
    reference: str | None = Field(description="The eval set's reference answer, if any.")
    answers: list[Answer | None] = Field(description="One per column (None: the model gave none).")


class ComparisonView(BaseModel):
    """One comparison's page."""

    run_id: str = Field(description="The compare_models run id.")
    state: State = Field(description="queued, running, success or failed, from the store.")
    error: str | None = Field(description="Why it failed, when the store says.")
    columns: list[Column] = Field(description="The models, in the conf's order.")
    rows: list[PromptRow] = Field(description="The questions with their answers (empty until done).")
    generation: GenerationSettings | None = Field(description="The shared generation settings.")
    device: str | None = Field(description="Where the local models ran.")
    finished_at: str | None = Field(description="When it finished.")
    charts: dict[str, Chart] = Field(
        default_factory=dict, description="Bar charts of each model's mean tokens/s and time to first token."
    )


def _option(choice: dict[str, Any], text: str) -> Option:
    return Option(value=json.dumps(choice, sort_keys=True), text=text)


def _registry_groups(root: str) -> list[OptionGroup]:
    versions, exports = [], []
    for name in registry.names(root):
        current = registry.pointer(root, name)
        production = current["version"] if current else None
        for entry in reversed(registry.list_versions(root, name)):
            number = entry["version"]
            tag = " (production)" if number == production else ""
            versions.append(_option({"registry": name, "version": number}, f"{name} v{number}{tag}"))
            if (entry.get("exports") or {}).get("onnx-int8"):
                choice = {"registry": name, "version": number, "format": "onnx-int8"}
                exports.append(_option(choice, f"{name} v{number} onnx-int8{tag}"))
    return [
        OptionGroup(label="Registry versions", options=versions),
        OptionGroup(label="ONNX INT8", options=exports),
    ]


def recent_runs(root: str, limit: int = RECENT_RUNS) -> list[tuple[str, str, str]]:
    """(experiment, run key, run prefix) of the runs that planned jobs, newest first."""
    found = []
    experiments = store.join(root, "experiments")
    for experiment in store.list_dir(experiments):
        runs = store.join(experiments, experiment, "runs")
        for key in store.list_dir(runs):
            prefix = store.join(runs, key)
            planned = store.modified_at(store.join(prefix, "jobs.json"))
            if planned:
                found.append((planned, experiment, key, prefix))
    found.sort(reverse=True)
    return [(experiment, key, prefix) for _, experiment, key, prefix in found[:limit]]


def _run_groups(root: str) -> tuple[OptionGroup, list[Option]]:
    jobs, exports = [], []
    for experiment, key, prefix in recent_runs(root):
        for job in store.read_json(store.join(prefix, "jobs.json")):
            job = PlannedJob.model_validate(job)
            choice = {"experiment": experiment, "run": key, "job": job.job_id}
            jobs.append(_option(choice, f"{experiment} / {key} / {job.label}"))
        export = store.committed_result(store.join(prefix, "export"))
        int8 = ((export or {}).get("formats") or {}).get("onnx-int8")
        if int8:
            exports.append(_option({"onnx": int8["uri"]}, f"{experiment} / {key} export onnx-int8"))
    return OptionGroup(label="Experiment jobs", options=jobs), exports


def _eval_set_groups(root: str) -> list[OptionGroup]:
    versions = []
    datasets = store.join(root, "datasets")
    for name in store.list_dir(datasets):
        for version in store.list_dir(store.join(datasets, name)):
            prepared = store.committed_result(layout.dataset_version(root, name, version))
            if prepared and prepared.get("kind") in ASKABLE_KINDS:
                versions.append(_option({"dataset": name, "version": version}, f"{name} @ {version}"))
    runs = [
        _option({"experiment": experiment, "run": key}, f"{experiment} / {key}")
        for experiment, key, _ in recent_runs(root)
    ]
    return [
        OptionGroup(label="Prepared dataset versions (test split)", options=versions),
        OptionGroup(label="Experiment runs (their eval rows)", options=runs),
    ]


def compare_form(store_root: str) -> CompareForm:
    registry_versions, int8 = _registry_groups(store_root)
    jobs, run_exports = _run_groups(store_root)
    catalog = OptionGroup(
        label="Catalog", options=[_option({"catalog": name}, name) for name in sorted(catalog_models())]
    )
    int8 = int8.model_copy(update={"options": int8.options + run_exports})
    groups = [group for group in (registry_versions, int8, jobs, catalog) if group.options]
    return CompareForm(
        models=groups,
        eval_sets=[group for group in _eval_set_groups(store_root) if group.options],
        defaults=GenerationSettings(),
        past=past_comparisons(store_root),
    )


def comparison_prefix(store_root: str, run_id: str) -> str:
    return layout.comparison(store_root, run_id)


def _state(prefix: str) -> tuple[State, str | None, dict[str, Any] | None]:
    """(state, the failure's message, the committed result) of the comparison at `prefix`."""
    results = store.join(prefix, RESULTS_DIR)
    committed = store.committed_result(results)
    if committed is not None:
        return "success", None, committed
    error = read_json(store.join(prefix, "error.json")) or read_json(store.join(results, "error.json"))
    if error:
        return "failed", error.get("message"), None
    return ("running" if store.exists(store.join(prefix, SPEC_FILE)) else "queued"), None, None


def past_comparisons(store_root: str, limit: int = 50) -> list[ComparisonSummary]:
    found = []
    root = layout.comparisons(store_root)
    for key in store.list_dir(root):
        prefix = store.join(root, key)
        state, _, _ = _state(prefix)
        spec = read_json(store.join(prefix, SPEC_FILE))
        if spec is not None:
            spec = CompareSpec.model_validate(spec)
            run_id, models = spec.run_id, [m.label for m in spec.models]
            first = spec.prompts[0].messages[-1]["content"] if spec.prompts else spec.eval_set.source
        else:
            refused = read_json(store.join(prefix, "error.json")) or {}
            run_id, models, first = refused.get("run_id", key), [], ""
        when = store.modified_at(prefix)
        found.append(
            ComparisonSummary(run_id=run_id, state=state, models=models, first_prompt=first, when=when)
        )
    found.sort(key=lambda c: c.when or "", reverse=True)
    return found[:limit]


def _mean(values: list[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return round(sum(present) / len(present), 4) if present else None


def speed_charts(result: CompareResult) -> dict[str, Chart]:
    """Bar charts (one bar per model) of the mean decode rate and the mean time to first token."""
    labels = [m.label for m in result.models]

    def chart(title: str, unit: str, values: list[float | None]) -> Chart:
        return Chart(
            title=title, y=unit, kind="bar", labels=labels, series=[Series(label=title, values=values)]
        )

    rates = [_mean([a.tokens_per_s for a in m.answers]) for m in result.models]
    ttft = [
        _mean([a.ttft_s * 1000 if a.ttft_s is not None else None for a in m.answers]) for m in result.models
    ]
    return {
        "tokens_per_s": chart("tokens/s (mean)", "tokens/s", rates),
        "ttft": chart("time to first token (mean)", "ms", ttft),
    }


def _column(model: Any) -> Column:
    """A model's column from its planned spec (not run yet: no load time, no error) or its result."""
    return Column(
        label=model.label,
        source=model.source,
        kind=model.kind,
        temperature=model.temperature,
        load_s=getattr(model, "load_s", None),
        error=getattr(model, "error", None),
    )


def comparison(store_root: str, run_id: str) -> ComparisonView:
    prefix = comparison_prefix(store_root, run_id)
    state, error, committed = _state(prefix)
    empty = {"rows": [], "generation": None, "device": None, "finished_at": None}
    if committed is None:
        spec = read_json(store.join(prefix, SPEC_FILE))
        columns = []
        if spec is not None:
            spec = CompareSpec.model_validate(spec)
            columns = [_column(m) for m in spec.models]
        return ComparisonView(run_id=run_id, state=state, error=error, columns=columns, **empty)
    result = CompareResult.model_validate(committed)
    columns = [_column(m) for m in result.models]
    by_model = [{answer.prompt_id: answer for answer in m.answers} for m in result.models]
    rows = [
        PromptRow(
            prompt_id=prompt.id,
            question=prompt.messages[-1]["content"] if prompt.messages else "",
            reference=prompt.reference,
            answers=[answers.get(prompt.id) for answers in by_model],
        )
        for prompt in result.prompts
    ]
    return ComparisonView(
        run_id=run_id,
        state=state,
        error=None,
        columns=columns,
        rows=rows,
        generation=result.generation,
        device=result.device,
        finished_at=result.finished_at,
        charts=speed_charts(result),
    )
