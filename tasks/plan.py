"""The light steps of a run, executed in the Airflow worker: validate the conf, plan the job matrix and
write every job spec to the store, so that a local subprocess and a pod read the same spec by URI."""

from __future__ import annotations

import itertools
from typing import Any

from tasks import layout, store
from tasks.catalog import resolve_experiment
from tasks.config import ConfError, DatasetConfig, ExperimentConfig, dataset_kind_problem, parse_experiment
from tasks.token_counts import distinct_tokenizers

HEAVY_STEPS = ("prepare_dataset", "train", "evaluate", "export", "check_export")


def step_argv(step: str, spec_uri: str) -> list[str]:
    """The command both backends run: the same in a local subprocess and in a pod."""
    return ["python", "-m", f"tasks.{step}", "--job", spec_uri]


def run_info(experiment_name: str, run_id: str, store_root: str) -> dict[str, str]:
    """Where a run lives: derived from the experiment name and run id only, so every task agrees."""
    return {"run_uri": layout.run(store_root, experiment_name, run_id), "store_root": store_root}


def prepared_definitions(experiment: ExperimentConfig, store_root: str) -> list[tuple[str, DatasetConfig]]:
    """(the experiment's name for it, its definition) per dataset, registered ones read from the registry."""
    from tasks import dataset_registry

    out, problems = [], []
    for index, dataset in enumerate(experiment.datasets):
        try:
            definition = dataset_registry.resolve(store_root, dataset.model_dump(mode="json"))
            out.append((dataset.name, DatasetConfig.model_validate(definition)))
        except ValueError as error:
            problems.append(f"datasets.{index}.registered: {error}")
    if problems:
        raise ConfError("invalid experiment conf:\n" + "\n".join(problems))
    return out


def validate_conf(conf: dict[str, Any], run_id: str, store_root: str) -> list[dict[str, Any]]:
    """Re-validate the whole conf (including rules JSON Schema cannot express), record it, and return
    one prepare spec per dataset."""
    experiment = parse_experiment(conf)
    try:
        resolved = resolve_experiment(experiment)
    except ValueError as error:
        raise ConfError(f"invalid experiment conf:\n{error}") from None
    run_uri = run_info(experiment.name, run_id, store_root)["run_uri"]
    definitions = prepared_definitions(experiment, store_root)
    # A registered dataset is prepared under its registered name; jobs keep the experiment's label.
    resolved["prepared_as"] = {label: dataset.name for label, dataset in definitions}
    store.write_json(store.join(run_uri, "experiment.json"), {**resolved, "run_id": run_id})
    tokenizers = distinct_tokenizers(resolved["models"])
    shortest = min(h["max_seq_length"] for h in resolved["hparams"])
    datasets = []
    for label, dataset in definitions:
        if dataset.max_tokens is None:
            # A longer row would be cut inside the answer by every job's max_seq_length.
            dataset = dataset.model_copy(update={"max_tokens": shortest})
        spec = {
            "step": "prepare_dataset",
            "store_root": store_root,
            "dataset": dataset.model_dump(mode="json"),
            "tokenizers": tokenizers,
        }
        spec_uri = store.join(run_uri, "datasets", f"{label}.json")
        store.write_json(spec_uri, spec)
        datasets.append({"name": label, "spec_uri": spec_uri, "argv": step_argv("prepare_dataset", spec_uri)})
    return datasets


def _job(run: dict[str, Any], resolved: dict[str, Any], kind: str, job_id: str, label: str, **inputs) -> dict:
    job_prefix = layout.job(run["run_uri"], job_id)
    experiment = resolved["experiment"]
    common = {"store_root": run["store_root"], "job_id": job_id, "label": label, **inputs}
    specs = {}
    if kind == "train":
        specs["train"] = {
            **common,
            "step": "train",
            "output": layout.step(job_prefix, "train"),
            "training": experiment["training"],
        }
    specs["evaluate"] = {
        **common,
        "step": "evaluate",
        "output": layout.step(job_prefix, "evaluate"),
        "train_output": layout.step(job_prefix, "train") if kind == "train" else None,
        "reference": kind == "reference",
        "scoring": experiment["scoring"],
    }
    job = {"job_id": job_id, "label": label, "kind": kind}
    for step, spec in specs.items():
        spec_uri = store.join(job_prefix, f"{step}.json")
        store.write_json(spec_uri, spec)
        job[f"{step}_spec"] = spec_uri
        job[f"{step}_argv"] = step_argv(step, spec_uri)
    return job


def _load(run: dict[str, Any], datasets: list[dict[str, Any]]) -> tuple[dict, dict, list[str]]:
    resolved = store.read_json(store.join(run["run_uri"], "experiment.json"))
    prepared = {d["name"]: d for d in datasets}
    order = [d["name"] for d in resolved["experiment"]["datasets"]]
    prepared_as = resolved.get("prepared_as") or {name: name for name in order}
    by_name = {label: {**prepared[prepared_as[label]], "name": label} for label in order}
    return resolved, by_name, order


def plan_jobs(run: dict[str, Any], datasets: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The cartesian product dataset x model x hyperparameter group: one training job each."""
    resolved, by_name, order = _load(run, datasets)
    training_type = resolved["experiment"]["training"]["type"]
    problems = [dataset_kind_problem(training_type, name, by_name[name]["kind"]) for name in order]
    if any(problems):
        # Before any job runs: a mismatch would fail every training job the same way.
        raise ConfError("; ".join(p for p in problems if p))
    jobs = []
    for name, model, hparams in itertools.product(order, resolved["models"], resolved["hparams"]):
        job_id = store.slug(f"{name}--{model['name']}--{hparams['name']}")
        label = f"{name}|{model['name']}|{hparams['name']}"
        jobs.append(
            _job(run, resolved, "train", job_id, label, dataset=by_name[name], model=model, hparams=hparams)
        )
    store.write_json(store.join(run["run_uri"], "jobs.json"), jobs)
    return jobs


def plan_references(run: dict[str, Any], datasets: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One scoring of each untouched base model per dataset, as reference rows on the leaderboard."""
    resolved, by_name, order = _load(run, datasets)
    references = []
    if resolved["experiment"]["scoring"]["compare_base"]:
        for name, model in itertools.product(order, resolved["models"]):
            job_id = store.slug(f"{name}--{model['name']}--base")
            label = f"{name}|{model['name']}|base"
            references.append(
                _job(run, resolved, "reference", job_id, label, dataset=by_name[name], model=model)
            )
    store.write_json(store.join(run["run_uri"], "references.json"), references)
    return references


def planned(run_uri: str) -> list[dict[str, Any]]:
    """Every job and reference scoring the run planned, read back from the store."""
    out = []
    for name in ("jobs.json", "references.json"):
        uri = store.join(run_uri, name)
        out += store.read_json(uri) if store.exists(uri) else []
    return out


def load_experiment(run_uri: str) -> dict[str, Any]:
    """The validated conf with every default filled in (the raw Params may omit nested fields)."""
    return store.read_json(store.join(run_uri, "experiment.json"))["experiment"]
