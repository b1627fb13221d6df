"""`plan_compare`, the first task of compare_models: validate the conf, resolve every chosen model to
what the step loads (a registry version's weights or INT8 export, an experiment job's training, a catalog
entry, a path, an endpoint's connection) and the eval set to its prepared rows, and write the spec.

A refused conf fails the task naming each field (`models.1: ...`), and is recorded as the comparison's
`error.json` so the Compare page can say why. Light: reads small JSON from the store.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import ValidationError

from tasks.compare.config import (
    CatalogChoice,
    CompareConfig,
    DatasetEvalSet,
    EndpointChoice,
    JobChoice,
    OnnxChoice,
    PathChoice,
    RegistryChoice,
)
from tasks.config import allowed_paths
from tasks.config.base import ConfError, format_validation_error
from tasks.config.catalog import CatalogEntry, resolve_model
from tasks.config.catalog import models as catalog_models
from tasks.config.models import ModelConfig
from tasks.contracts.compare import (
    ASKABLE_KINDS,
    RESULTS_DIR,
    SPEC_FILE,
    CompareModel,
    ComparePrompt,
    CompareSpec,
    EvalSetRows,
)
from tasks.contracts.evaluate import EvaluateSpec
from tasks.contracts.planning import PlannedJob
from tasks.contracts.prepare import PreparedDataset
from tasks.contracts.train import TrainResult
from tasks.registry import versions as registry
from tasks.registry.champion import champion_weights
from tasks.storage import layout, store


def comparison_prefix(store_root: str, run_id: str) -> str:
    return layout.comparison(store_root, run_id)


def spec_uri(store_root: str, run_id: str) -> str:
    return store.join(comparison_prefix(store_root, run_id), SPEC_FILE)


def step_argv(store_root: str, run_id: str) -> list[str]:
    """The command both backends run for this comparison."""
    return ["python", "-m", "tasks.compare_models", "--job", spec_uri(store_root, run_id)]


def _as_uri(location: str) -> str:
    """A plain local path as a file:// URI; URIs and `hf:` ids unchanged."""
    return location if "://" in location or location.startswith("hf:") else store.to_uri(location)


def _registry_model(choice: RegistryChoice, root: str) -> CompareModel:
    numbers = registry.version_numbers(root, choice.registry)
    if not numbers:
        known = ", ".join(registry.names(root)) or "none yet"
        raise ValueError(f"registry: no registry '{choice.registry}' (registries: {known})")
    if choice.version == "production":
        current = registry.production(root, choice.registry)
        if current is None:
            raise ValueError(f"version: registry '{choice.registry}' has no version in production yet")
        entry = current["entry"]
    else:
        entry = registry.get_version(root, choice.registry, choice.version)
        if entry is None:
            listed = ", ".join(map(str, numbers))
            raise ValueError(f"version: '{choice.registry}' has no v{choice.version} (versions: {listed})")
    name = f"{choice.registry} v{entry['version']}"
    source = f"registry {name}" + (" (production)" if choice.version == "production" else "")
    if choice.format == "onnx-int8":
        export = (entry.get("exports") or {}).get("onnx-int8")
        if not export:
            raise ValueError(f"format: {name} was registered without an onnx-int8 export")
        return CompareModel(label=f"{name} int8", source=f"{source}, onnx-int8", kind="onnx", onnx_uri=export)
    weights = champion_weights(entry)
    if weights is None:
        raise ValueError(f"version: {name} was registered before its weights were recorded, so cannot load")
    model_entry, trained = weights
    return CompareModel(
        label=name,
        source=source,
        kind="pytorch",
        entry=model_entry,
        **trained.model_dump(mode="json", exclude_none=True),
    )


def _job_model(choice: JobChoice, root: str) -> CompareModel:
    run = layout.run(root, choice.experiment, choice.run)
    spec_uri = store.join(layout.job(run, choice.job), "evaluate.json")
    if not store.exists(spec_uri):
        jobs = sorted(store.list_dir(store.join(run, "jobs")))
        where = f"run '{choice.run}' of experiment '{choice.experiment}'"
        raise ValueError(f"job: no job '{choice.job}' in {where} (jobs: {', '.join(jobs) or 'none'})")
    spec = EvaluateSpec.load(store.read_json(spec_uri), spec_uri)
    weights: dict[str, Any] = {}
    if spec.train_output:
        committed = store.committed_result(spec.train_output)
        if committed is None:
            raise ValueError(f"job: '{choice.job}' has no committed training (it failed or is still running)")
        trained = TrainResult.load(committed, spec.train_output)
        weights = {"model_uri": trained.model_uri, "adapter_uri": trained.adapter_uri}
    elif spec.trained:
        weights = spec.trained.model_dump(mode="json")
    weights = {key: value for key, value in weights.items() if value}
    source = f"experiment {choice.experiment}, run {choice.run}, job {choice.job}"
    return CompareModel(label=spec.label, source=source, kind="pytorch", entry=spec.model, **weights)


def _resolved(field: str, model: ModelConfig) -> CatalogEntry:
    try:
        return resolve_model(model)
    except ValueError as error:  # a catalog entry that needs remote code without a pinned revision
        raise ValueError(f"{field}: {error}") from None


def resolve_choice(choice: Any, root: str) -> CompareModel:
    """What the step loads for one model choice (ValueError naming the field otherwise)."""
    if isinstance(choice, RegistryChoice):
        model = _registry_model(choice, root)
    elif isinstance(choice, JobChoice):
        model = _job_model(choice, root)
    elif isinstance(choice, CatalogChoice):
        if choice.catalog not in catalog_models():
            known = ", ".join(sorted(catalog_models()))
            raise ValueError(f"catalog: '{choice.catalog}' is not in the catalog ({known})")
        entry = _resolved("catalog", ModelConfig(name=choice.catalog))
        model = CompareModel(label=entry.name, source=f"catalog {entry.name}", kind="pytorch", entry=entry)
    elif isinstance(choice, PathChoice):
        entry = _resolved("path", ModelConfig(name="path", uri=_as_uri(choice.path)))
        model = CompareModel(label=choice.path, source=f"path {choice.path}", kind="pytorch", entry=entry)
    elif isinstance(choice, OnnxChoice):
        uri = _as_uri(choice.onnx)
        model = CompareModel(label=choice.onnx, source=f"onnx {choice.onnx}", kind="onnx", onnx_uri=uri)
    else:
        assert isinstance(choice, EndpointChoice)
        label = f"{choice.connection}" + (f" {choice.model}" if choice.model else "")
        model = CompareModel(
            label=label,
            source=f"connection {choice.connection}",
            kind="endpoint",
            conn_id=choice.connection,
            endpoint_model=choice.model,
        )
    updates = {"label": choice.label or model.label}
    if choice.temperature is not None:
        updates["temperature"] = choice.temperature
    return model.model_copy(update=updates)


def _unique_labels(models: list[CompareModel], temperature: float) -> list[CompareModel]:
    """Column headers told apart: the same model twice gets its temperature, then its position."""

    def relabel(models: list[CompareModel], suffix) -> list[CompareModel]:
        labels = [m.label for m in models]
        return [
            m.model_copy(update={"label": f"{m.label} {suffix(i, m)}"}) if labels.count(m.label) > 1 else m
            for i, m in enumerate(models)
        ]

    def temperature_of(index: int, model: CompareModel) -> str:
        return f"T={model.temperature if model.temperature is not None else temperature:g}"

    return relabel(relabel(models, temperature_of), lambda index, model: f"#{index + 1}")


def _prepared(uri: str, what: str) -> PreparedDataset:
    committed = store.committed_result(uri)
    if committed is None:
        raise ValueError(f"{what} is not prepared (no committed version at {uri})")
    dataset = PreparedDataset.load(committed, uri)
    if dataset.kind not in ASKABLE_KINDS:
        raise ValueError(f"{what} holds {dataset.kind} rows, which have no prompts to ask")
    return dataset


def resolve_eval_set(choice: Any, root: str) -> EvalSetRows:
    if isinstance(choice, DatasetEvalSet):
        what = f"dataset '{choice.dataset}' version '{choice.version}'"
        dataset = _prepared(layout.dataset_version(root, choice.dataset, choice.version), what)
        return EvalSetRows(dataset=dataset, limit=choice.limit, source=what)
    run = layout.run(root, choice.experiment, choice.run)
    jobs_uri = store.join(run, "jobs.json")
    if not store.exists(jobs_uri):
        raise ValueError(f"run: no planned jobs in run '{choice.run}' of experiment '{choice.experiment}'")
    job = PlannedJob.model_validate(store.read_json(jobs_uri)[0])
    spec = EvaluateSpec.load(store.read_json(job.evaluate_spec), job.evaluate_spec)
    what = f"the eval rows of run '{choice.run}' ({spec.scored_on.name})"
    return EvalSetRows(dataset=spec.scored_on, limit=choice.limit, source=what)


def local_paths(conf: CompareConfig) -> list[tuple[str, str | None]]:
    """(field, path) of every model the conf names by a local path or ONNX file."""
    fields: list[tuple[str, str | None]] = []
    for index, choice in enumerate(conf.models):
        if isinstance(choice, PathChoice):
            fields.append((f"models.{index}.path", choice.path))
        elif isinstance(choice, OnnxChoice):
            fields.append((f"models.{index}.onnx", choice.onnx))
    return fields


def plan_compare(
    params: dict[str, Any], run_id: str, store_root: str, allowed_roots: list[Path] | None = None
) -> CompareSpec:
    """The spec of this run's comparison, written to `compare/<run>/spec.json`; ConfError naming every
    refused field otherwise. `allowed_roots`: where local model paths may lie (`tasks.config.allowed_paths`);
    None takes `TUNERFLOW_ALLOWED_PATHS`, every path when it is unset (the DAG passes the deployment's)."""
    try:
        conf = CompareConfig.model_validate(params)
    except ValidationError as error:
        raise ConfError(format_validation_error(error)) from None
    roots = allowed_roots if allowed_roots is not None else allowed_paths.configured()
    problems = allowed_paths.problems(local_paths(conf), roots)
    models = []
    for index, choice in enumerate(conf.models):
        if any(problem.startswith(f"models.{index}.") for problem in problems):
            continue
        try:
            models.append(resolve_choice(choice, store_root))
        except ValueError as error:
            problems.append(f"models.{index}.{error}")  # the error starts with the choice's field
    eval_set = None
    if conf.eval_set is not None:
        try:
            eval_set = resolve_eval_set(conf.eval_set, store_root)
        except ValueError as error:
            problems.append(f"eval_set: {error}")
    if problems:
        raise ConfError("\n".join(problems))
    prefix = comparison_prefix(store_root, run_id)
    spec = CompareSpec(
        store_root=store_root,
        output=store.join(prefix, RESULTS_DIR),
        run_id=run_id,
        models=_unique_labels(models, conf.temperature),
        prompts=[
            ComparePrompt(id=f"typed-{n}", messages=[{"role": "user", "content": text}])
            for n, text in enumerate(conf.prompts, 1)
        ],
        eval_set=eval_set,
        generation=conf.generation,
    )
    store.write_json(spec_uri(store_root, run_id), spec.model_dump(mode="json"))
    return spec


def record_refusal(store_root: str, run_id: str, message: str) -> None:
    """Why the conf was refused, where the Compare page looks for it."""
    store.write_json(
        store.join(comparison_prefix(store_root, run_id), "error.json"),
        {"step": "plan_compare", "type": "ConfError", "run_id": run_id, "message": message},
    )
