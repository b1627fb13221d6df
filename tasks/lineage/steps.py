"""What each heavy step read and wrote, from its spec and the result it committed.

`step_lineage(step, spec, result)` gives a step's `Lineage`:

- prepare_dataset: the dataset's sources -> the prepared version (`tunerflow_prepared`: version, rows kept
  per split, dropped per reason; content hash from its manifest);
- train (and merge): the prepared dataset(s) and the base model -> the job's checkpoints and its trained
  model (`tunerflow_training`: hyperparameters, final train metrics);
- evaluate (score_base, score_merge, score_champion): the model and the split scored -> the evaluate
  output with its predictions (`tunerflow_metrics`);
- export: the model -> the merged model and each exported format (hash, size);
- check_export: the exported formats -> the checks (`tunerflow_metrics`: passed, the formats' gates).

Specs and results are the step's contracts (tasks.contracts), loaded inside the functions as the step
libraries are.
"""

from __future__ import annotations

from typing import Any

from tasks.lineage.datasets import Lineage, input_dataset, output_dataset
from tasks.lineage.naming import model_id
from tasks.storage import store


def step_lineage(step: str, spec: dict[str, Any], result: dict[str, Any]) -> Lineage:
    """The datasets `step` read and wrote; an empty Lineage for a step that reports none."""
    builder = BUILDERS.get(step)
    return builder(spec, result) if builder else Lineage()


def _base_model(model: Any, role: str = "base_model") -> Any:
    """The base model as an input: named by its hub id or its path (tasks.lineage.naming.model_id), its
    pinned revision as the version."""
    # Our facets import the optional openlineage client: loaded only where lineage is built.
    from tasks.lineage.facets import ModelFacet

    facet = ModelFacet(role=role, baseModel=model.name, hubId=model.hub_id or model.source.hub)
    return input_dataset(None, facet, version=model.revision, name=model_id(model))


def _prepared_facet(dataset: Any, split: str | None = None) -> Any:
    """The facet of a prepared dataset (a PreparedDataset: its version, counts and drop reasons)."""
    # Our facets import the optional openlineage client: loaded only where lineage is built.
    from tasks.lineage.facets import PreparedDatasetFacet

    return PreparedDatasetFacet(
        version=dataset.version,
        kind=dataset.kind,
        format=dataset.format,
        rows=dict(dataset.counts),
        kept=sum(dataset.counts.values()),
        dropped=dataset.dropped,
        dropReasons=dataset.drop_reasons,
        split=split,
    )


def _prepared_input(dataset: Any, split: str | None = None) -> Any:
    return input_dataset(dataset.uri, _prepared_facet(dataset, split), version=dataset.version)


def prepare_lineage(spec: dict[str, Any], result: dict[str, Any]) -> Lineage:
    # Contracts load where lineage is built, as the step libraries do.
    from tasks.contracts.prepare import PreparedDataset, PrepareSpec

    prepare, prepared = PrepareSpec.model_validate(spec), PreparedDataset.model_validate(result)
    dataset = prepare.dataset
    sources = [dataset.uri, *(s.uri for s in dataset.sources or [])]
    sources += [dataset.train_uri, dataset.validation_uri, dataset.test_uri]
    inputs = [input_dataset(uri) for uri in dict.fromkeys(s for s in sources if s)]
    output = output_dataset(
        prepared.uri, _prepared_facet(prepared), version=prepared.version, rows=sum(prepared.counts.values())
    )
    return Lineage(inputs=inputs, outputs=[output])


def _job_datasets(job: Any) -> list[Any]:
    """A job's prepared dataset and the experiment's eval set, when it has one."""
    found = [_prepared_input(job.dataset)]
    if job.eval_set is not None and job.eval_set.uri != job.dataset.uri:
        found.append(_prepared_input(job.eval_set))
    return found


def train_lineage(spec: dict[str, Any], result: dict[str, Any]) -> Lineage:
    """train and merge: their specs share the job's fields; a merge's parts come in as its inputs."""
    # Contracts and facets load where lineage is built, as the step libraries do.
    from tasks.contracts.job import JobSpec
    from tasks.contracts.train import TrainResult
    from tasks.lineage.facets import ModelFacet, TrainingFacet  # (see above)

    job, trained = JobSpec.model_validate(_job_fields(spec)), TrainResult.model_validate(result)
    inputs = [*_job_datasets(job), _base_model(job.model)]
    for part in spec.get("parts") or []:  # a merge: the jobs' weights it merged
        weights = part.get("adapter_uri") or part.get("model_uri")
        inputs.append(
            input_dataset(weights, ModelFacet(role="part", baseModel=job.model.name, job=part["label"]))
        )
    hparams = spec.get("hparams") or {}
    metrics = {
        key: getattr(trained, key)
        for key in ("train_loss", "eval_loss", "steps", "runtime_s", "tokens_per_s", "device_hours")
        if getattr(trained, key) is not None
    }
    training = TrainingFacet(
        hyperparameters=hparams,
        metrics=metrics,
        trainingType=(spec.get("training") or {}).get("type"),
        stopped=trained.stopped,
        mergedFrom=trained.merged_from,
    )
    outputs = []
    if trained.checkpoints is not None:
        checkpoints = ModelFacet(role="checkpoints", job=trained.label, steps=trained.checkpoints.steps)
        outputs.append(output_dataset(trained.checkpoints.uri, checkpoints))
    weights = trained.adapter_uri or trained.model_uri
    role = "adapter" if trained.adapter_uri else "model"
    model = ModelFacet(role=role, baseModel=job.model.name, job=trained.label, method=trained.method)
    if weights:
        outputs.append(output_dataset(weights, model, training))
    if trained.merged_uri:
        merged = ModelFacet(role="merged", baseModel=job.model.name, job=trained.label, method=trained.method)
        outputs.append(output_dataset(trained.merged_uri, merged, training))
    return Lineage(inputs=inputs, outputs=outputs)


def _job_fields(spec: dict[str, Any]) -> dict[str, Any]:
    from tasks.contracts.job import JobSpec  # a contract: loaded where lineage is built

    return {key: spec[key] for key in JobSpec.model_fields if key in spec}


def _scored_weights(spec: Any) -> tuple[str | None, str]:
    """(URI, role) of the weights an evaluate spec scores: the job's trained weights, given weights (the
    champion), or none (a base model's reference row)."""
    if spec.train_output:
        trained = store.committed_result(spec.train_output) or {}
        uri = trained.get("adapter_uri") or trained.get("model_uri")
        return uri, "adapter" if trained.get("adapter_uri") else "model"
    if spec.trained is not None:
        uri = spec.trained.model_uri or spec.trained.adapter_uri
        return uri, "model" if spec.trained.model_uri else "adapter"
    return None, "base_model"


def evaluate_lineage(spec: dict[str, Any], result: dict[str, Any]) -> Lineage:
    # Contracts and facets load where lineage is built, as the step libraries do.
    from tasks.contracts.evaluate import EvaluateResult, EvaluateSpec
    from tasks.lineage.facets import MetricsFacet, ModelFacet

    evaluate, scored = EvaluateSpec.model_validate(spec), EvaluateResult.model_validate(result)
    weights, role = _scored_weights(evaluate)
    inputs = [_prepared_input(evaluate.scored_on, split=scored.split)]
    if weights:
        inputs.append(input_dataset(weights, ModelFacet(role=role, baseModel=evaluate.model.name)))
    if not weights or role == "adapter":
        inputs.append(_base_model(evaluate.model))
    metrics = MetricsFacet(
        metrics=dict(scored.metrics),
        split=scored.split,
        rows=scored.n,
        scoredOn=scored.scored_on,
        reference=scored.reference,
    )
    return Lineage(inputs=inputs, outputs=[output_dataset(evaluate.output, metrics, rows=scored.n)])


def export_lineage(spec: dict[str, Any], result: dict[str, Any]) -> Lineage:
    # Contracts and facets load where lineage is built, as the step libraries do.
    from tasks.contracts.export import ExportResult, ExportSpec
    from tasks.lineage.facets import ModelFacet

    export, exported = ExportSpec.model_validate(spec), ExportResult.model_validate(result)
    name = export.model.name
    inputs = [_base_model(export.model)]
    if export.adapter_uri or export.model_uri:
        role = "adapter" if export.adapter_uri else "model"
        inputs.append(
            input_dataset(export.adapter_uri or export.model_uri, ModelFacet(role=role, baseModel=name))
        )
    merged = ModelFacet(role="merged", baseModel=name, sizeBytes=exported.pytorch_size_bytes)
    outputs = [output_dataset(exported.merged_uri, merged)]
    for fmt, info in exported.formats.items():
        outputs.append(
            output_dataset(info.uri, ModelFacet(role=fmt, baseModel=name, sizeBytes=info.size_bytes))
        )
    return Lineage(inputs=inputs, outputs=outputs)


def check_export_lineage(spec: dict[str, Any], result: dict[str, Any]) -> Lineage:
    # Contracts and facets load where lineage is built, as the step libraries do.
    from tasks.contracts.export import CheckExportResult, CheckExportSpec, ExportResult
    from tasks.lineage.facets import MetricsFacet, ModelFacet

    check, checked = CheckExportSpec.model_validate(spec), CheckExportResult.model_validate(result)
    exported = check.export
    if exported is None and check.export_output:
        committed = store.committed_result(check.export_output)
        exported = ExportResult.model_validate(committed) if committed else None
    formats = exported.formats if exported else {}
    inputs = [
        input_dataset(info.uri, ModelFacet(role=fmt, baseModel=check.model.name))
        for fmt, info in formats.items()
    ]
    inputs.append(_prepared_input(check.dataset))
    gates = {fmt: details.get("passed") for fmt, details in checked.formats.items()}
    metrics = MetricsFacet(metrics={"formats_passed": gates}, rows=checked.test_rows, passed=checked.passed)
    return Lineage(inputs=inputs, outputs=[output_dataset(check.output, metrics)])


BUILDERS = {
    "prepare_dataset": prepare_lineage,
    "train": train_lineage,
    "merge": train_lineage,
    "evaluate": evaluate_lineage,
    "export": export_lineage,
    "check_export": check_export_lineage,
}
