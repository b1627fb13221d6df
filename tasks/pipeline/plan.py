"""The light steps of a run, executed in the Airflow worker: validate the conf, plan the job matrix and
write every job spec to the store, so that a local subprocess and a pod read the same spec by URI."""

from __future__ import annotations

import itertools
import json
from pathlib import Path
from typing import Any

from tasks.config import allowed_paths
from tasks.config.base import ConfError
from tasks.config.catalog import resolve_experiment
from tasks.config.dataset import DatasetConfig
from tasks.config.experiment import ExperimentConfig, parse_experiment
from tasks.config.search import SearchConfig
from tasks.config.training import dataset_kind_problem
from tasks.contracts.evaluate import EvaluateSpec
from tasks.contracts.planning import PlannedJob, RunInfo, step_argv
from tasks.contracts.prepare import EvalPrompt, PlannedDataset, PreparedDataset, PrepareSpec
from tasks.contracts.train import TrainSpec
from tasks.data import dataset_registry
from tasks.data.rows import prompt_text
from tasks.data.token_counts import distinct_tokenizers
from tasks.pipeline.costs import device_prices
from tasks.search.jobs import committed_train, device_hours_by_label, job_id_of, round_jobs
from tasks.search.rounds import RoundPlan, advance, is_search, mapped_jobs, read_round, start, write_round
from tasks.search.study import StudyRecord, load_study, save_study
from tasks.search.trials import trial_hparams
from tasks.storage import layout, store

HEAVY_STEPS = ("prepare_dataset", "train", "evaluate", "export", "check_export")


class RunCancelled(RuntimeError):
    """The run was cancelled from outside Airflow before it started (`layout.cancel_request`)."""


def run_info(experiment_name: str, run_id: str, store_root: str) -> RunInfo:
    """Where a run lives: derived from the experiment name and run id only, so every task agrees."""
    return RunInfo(run_uri=layout.run(store_root, experiment_name, run_id), store_root=store_root)


def prepared_definitions(experiment: ExperimentConfig, store_root: str) -> list[tuple[str, DatasetConfig]]:
    """(the experiment's name for it, its definition) per dataset, registered ones read from the registry."""

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


def eval_definition(experiment: ExperimentConfig, store_root: str) -> DatasetConfig | None:
    """`scoring.eval_dataset`, a registered one read from the registry."""

    if experiment.scoring.eval_dataset is None:
        return None
    try:
        given = experiment.scoring.eval_dataset.model_dump(mode="json")
        definition = dataset_registry.resolve(store_root, given)
    except ValueError as error:
        raise ConfError(f"invalid experiment conf:\nscoring.eval_dataset.registered: {error}") from None
    return DatasetConfig.model_validate(definition)


def question_rows(experiment: ExperimentConfig) -> list[dict[str, Any]]:
    """`scoring.eval_questions` as held-out chat rows, ids naming their place in the conf."""
    rows = []
    for index, item in enumerate(experiment.scoring.eval_questions):
        system = [{"role": "system", "content": item.system}] if item.system else []
        messages = [*system, {"role": "user", "content": item.question}]
        answer = {"role": "assistant", "content": item.answer}
        rows.append({"id": f"eval_questions:{index}", "messages": [*messages, answer]})
    return rows


def write_question_set(run_uri: str, rows: list[dict[str, Any]]) -> dict[str, Any]:
    """The fixed questions as a prepared dataset holding one test split, read like any other."""
    uri = store.join(run_uri, "eval_questions")
    with open(store.local_dir(uri) / "test.jsonl", "w", encoding="utf-8") as handle:
        for row in rows:
            handle.write(json.dumps(row, ensure_ascii=False) + "\n")
    dataset = PreparedDataset(name="eval_questions", uri=uri, kind="chat", counts={"test": len(rows)})
    # Committed like a prepared dataset, so steps on another machine fetch it (uploaded on S3).
    store.commit(uri, dataset.model_dump(mode="json"))
    return dataset.model_dump(mode="json")


def path_problems(
    experiment: ExperimentConfig,
    definitions: list[tuple[str, DatasetConfig]],
    evaluation: DatasetConfig | None,
    roots: list[Path] | None,
) -> list[str]:
    """Every local path the conf reads (registered datasets' files included) outside `roots`."""
    fields: list[tuple[str, str | None]] = []
    for index, (_, dataset) in enumerate(definitions):
        fields += allowed_paths.dataset_uris(f"datasets.{index}", dataset.model_dump(mode="json"))
    if evaluation is not None:
        fields += allowed_paths.dataset_uris("scoring.eval_dataset", evaluation.model_dump(mode="json"))
    fields += [(f"models.{index}.uri", model.uri) for index, model in enumerate(experiment.models)]
    return allowed_paths.problems(fields, roots)


def validate_conf(
    conf: dict[str, Any], run_id: str, store_root: str, allowed_roots: list[Path] | None = None
) -> list[PlannedDataset]:
    """Re-validate the whole conf (including rules JSON Schema cannot express), record it, and return
    one prepare spec per dataset (the eval set, when there is one, last, with role `eval`).

    `allowed_roots`: the directories local paths may lie under (`tasks.config.allowed_paths`); None takes
    `TUNERFLOW_ALLOWED_PATHS`, every path when it is unset (the DAG passes the deployment's roots)."""

    experiment = parse_experiment(conf)
    # A deployment's unreadable price fails the run here, not in selection after every job trained.
    device_prices()
    try:
        resolved = resolve_experiment(experiment)
    except ValueError as error:
        raise ConfError(f"invalid experiment conf:\n{error}") from None
    run_uri = run_info(experiment.name, run_id, store_root).run_uri
    if store.exists(layout.cancel_request(run_uri)):
        # Airflow's scheduler can start a queued run that was just marked failed (it writes back the
        # state it read before): the cancel's own record stops such a run before it prepares or trains.
        raise RunCancelled(f"run {run_id} was cancelled ({layout.cancel_request(run_uri)}); not starting it")
    definitions = prepared_definitions(experiment, store_root)
    evaluation = eval_definition(experiment, store_root)
    roots = allowed_roots if allowed_roots is not None else allowed_paths.configured()
    outside = path_problems(experiment, definitions, evaluation, roots)
    if outside:
        raise ConfError("invalid experiment conf:\n" + "\n".join(outside))
    # A registered dataset is prepared under its registered name; jobs keep the experiment's label.
    resolved["prepared_as"] = {label: dataset.name for label, dataset in definitions}
    questions = question_rows(experiment)
    if questions:
        resolved["eval_set"] = write_question_set(run_uri, questions)
    if evaluation is not None:
        resolved["eval_prepared_as"] = evaluation.name
    store.write_json(layout.experiment_record(run_uri), {**resolved, "run_id": run_id})
    tokenizers = distinct_tokenizers(resolved["models"])
    shortest = min(h["max_seq_length"] for h in resolved["hparams"])
    common: dict[str, Any] = {"step": "prepare_dataset", "store_root": store_root, "tokenizers": tokenizers}
    decontaminate: dict[str, Any] = {}
    if questions:
        decontaminate["eval_prompts"] = [EvalPrompt(id=row["id"], text=prompt_text(row)) for row in questions]
    if evaluation is not None:
        decontaminate["eval_sets"] = [evaluation]
    specs = []
    for label, dataset in definitions:
        if dataset.max_tokens is None:
            # A longer row would be cut inside the answer by every job's max_seq_length.
            dataset = dataset.model_copy(update={"max_tokens": shortest})
        specs.append((label, PrepareSpec(**common, **decontaminate, dataset=dataset)))
    if evaluation is not None:
        label = experiment.scoring.eval_dataset.name
        specs.append((label, PrepareSpec(**common, dataset=evaluation, role="eval")))
    datasets = []
    for label, spec in specs:
        spec_uri = store.join(run_uri, "datasets", f"{label}.json")
        store.write_json(spec_uri, spec.model_dump(mode="json"))
        role = {"role": spec.role} if spec.role == "eval" else {}
        argv = step_argv("prepare_dataset", spec_uri)
        datasets.append(PlannedDataset(name=label, spec_uri=spec_uri, argv=argv, **role))
    return datasets


def _job(
    run: RunInfo,
    resolved: dict[str, Any],
    kind: str,
    job_id: str,
    label: str,
    place: dict[str, Any] | None = None,
    **inputs,
) -> PlannedJob:
    """A job's specs written to the store; `place` is its search round, trial and finality, and the
    train spec's checkpoints and stop_at_step with halving."""
    place = place or {}
    job_prefix = layout.job(run.run_uri, job_id)
    experiment = resolved["experiment"]
    common = {"store_root": run.store_root, "job_id": job_id, "label": label, **inputs}
    if resolved.get("eval_set"):
        common["eval_set"] = resolved["eval_set"]
    specs: dict[str, TrainSpec | EvaluateSpec] = {}
    if kind == "train":
        halving = {k: place[k] for k in ("checkpoints", "stop_at_step") if place.get(k)}
        specs["train"] = TrainSpec(
            **common,
            **halving,
            step="train",
            output=layout.step(job_prefix, "train"),
            training=experiment["training"],
            scoring=experiment["scoring"],
        )
    specs["evaluate"] = EvaluateSpec(
        **common,
        step="evaluate",
        output=layout.step(job_prefix, "evaluate"),
        train_output=layout.step(job_prefix, "train") if kind == "train" else None,
        reference=kind == "reference",
        scoring=experiment["scoring"],
        # scoring.rank_on exports every job the way the winner will be exported.
        export_config=experiment["export"],
    )
    uris = {}
    for step, spec in specs.items():
        spec_uri = store.join(job_prefix, f"{step}.json")
        store.write_json(spec_uri, spec.model_dump(mode="json"))
        uris[f"{step}_spec"] = spec_uri
        uris[f"{step}_argv"] = step_argv(step, spec_uri)
    placed = {k: place[k] for k in ("round", "trial", "final") if k in place}
    return PlannedJob(job_id=job_id, label=label, kind=kind, **placed, **uris)


def _load(
    run: RunInfo, datasets: list[PreparedDataset]
) -> tuple[dict, dict[str, PreparedDataset], list[str]]:
    resolved = store.read_json(layout.experiment_record(run.run_uri))
    prepared = {d.name: d for d in datasets}
    if resolved.get("eval_prepared_as"):
        # The eval set was prepared beside the training datasets; every job is scored on it.
        resolved["eval_set"] = prepared.pop(resolved["eval_prepared_as"])
    order = [d["name"] for d in resolved["experiment"]["datasets"]]
    prepared_as = resolved.get("prepared_as") or {name: name for name in order}
    by_name = {label: prepared[prepared_as[label]].model_copy(update={"name": label}) for label in order}
    return resolved, by_name, order


def _write_planned(run: RunInfo, name: str, planned: list[PlannedJob]) -> list[PlannedJob]:
    store.write_json(store.join(run.run_uri, name), [job.model_dump(mode="json") for job in planned])
    return planned


def _search(resolved: dict[str, Any]) -> SearchConfig:
    # A run recorded before searches existed has no `search` section: the groups as given.
    return SearchConfig.model_validate(resolved["experiment"].get("search", {}))


def plan_jobs(run: RunInfo, datasets: list[PreparedDataset]) -> list[PlannedJob]:
    """Round 1: the cartesian product dataset x model x trial, one training job each. Without a search
    the trials are the hyperparameter groups as given; with one, `tasks.search` says which."""
    resolved, by_name, order = _load(run, datasets)
    training_type = resolved["experiment"]["training"]["type"]
    problems = [dataset_kind_problem(training_type, name, by_name[name].kind) for name in order]
    if any(problems):
        # Before any job runs: a mismatch would fail every training job the same way.
        raise ConfError("; ".join(p for p in problems if p))
    search = _search(resolved)
    if not is_search(search):
        cells = itertools.product(order, resolved["models"], resolved["hparams"])
        jobs = [_cell_job(run, resolved, by_name[name], model, hparams) for name, model, hparams in cells]
        write_round(run.run_uri, RoundPlan(round=1, train=jobs, evaluate=jobs))
        return _write_planned(run, "jobs.json", jobs)
    existing = read_round(run.run_uri, 1)
    if existing is not None:
        return _replayed(run, existing)
    study, decision = start(search, [group["name"] for group in resolved["hparams"]])
    try:
        trials = [_hparams_of(resolved, search, study, name) for name in decision.train]
    except ValueError as error:
        raise ConfError(f"invalid experiment conf:\n{error}") from None
    jobs = []
    for name, model, hparams in itertools.product(order, resolved["models"], trials):
        job_id = job_id_of(name, model["name"], hparams["name"])
        place = {"round": 1, "trial": hparams["name"], "final": decision.final}
        if search.halving is not None:
            place["checkpoints"] = store.join(layout.job(run.run_uri, job_id), "checkpoints")
            place["stop_at_step"] = decision.stop_at_step
        jobs.append(_cell_job(run, resolved, by_name[name], model, hparams, place))
    return _finish_round(run, RoundPlan(round=1, train=jobs, evaluate=_finals(jobs), study=study), [])


def _cell_job(run, resolved, dataset, model, hparams, place: dict[str, Any] | None = None) -> PlannedJob:
    job_id = job_id_of(dataset.name, model["name"], hparams["name"])
    label = f"{dataset.name}|{model['name']}|{hparams['name']}"
    return _job(run, resolved, "train", job_id, label, place, dataset=dataset, model=model, hparams=hparams)


def _hparams_of(resolved: dict[str, Any], search: SearchConfig, study: StudyRecord, name: str) -> dict:
    """A trial's resolved hyperparameters: its group as given, or the one base group with its values."""
    groups = {group["name"]: group for group in resolved["hparams"]}
    params = study.trial(name).params
    base = groups[name] if not search.space else resolved["hparams"][0]
    return trial_hparams(base, name, params, search.halving)


def _finals(jobs: list[PlannedJob]) -> list[PlannedJob]:
    return [job for job in jobs if job.final]


def _replayed(run: RunInfo, plan: RoundPlan) -> list[PlannedJob]:
    """A cleared planning task re-run: the jobs its first run planned, and the study it left (unless a
    later round moved it on)."""
    study = load_study(run.run_uri)
    if plan.study is not None and (study is None or study.rounds < plan.round):
        save_study(run.run_uri, plan.study)
    return plan.train


def _finish_round(run: RunInfo, plan: RoundPlan, earlier: list[PlannedJob]) -> list[PlannedJob]:
    """jobs.json (every round's jobs, a job re-planned replacing itself), then the round's file, then
    the study: a crash before the round's file leaves the study as the round found it."""
    changed = {job.job_id: job for job in [*plan.train, *plan.evaluate]}
    kept = [changed.pop(job.job_id, job) for job in earlier]
    _write_planned(run, "jobs.json", [*kept, *changed.values()])
    write_round(run.run_uri, plan)
    save_study(run.run_uri, plan.study)
    return plan.train


def plan_references(run: RunInfo, datasets: list[PreparedDataset]) -> list[PlannedJob]:
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
    return _write_planned(run, "references.json", references)


def planned(run_uri: str) -> list[PlannedJob]:
    """Every job, reference scoring and merged candidate the run planned, read back from the store."""
    out = []
    for name in ("jobs.json", "references.json", "merges.json"):
        uri = store.join(run_uri, name)
        out += [PlannedJob.load(job, uri) for job in store.read_json(uri)] if store.exists(uri) else []
    return out


def plan_round(run: RunInfo, round_number: int) -> list[PlannedJob]:
    """Round k > 1 of a search, once round k-1's jobs ended: tell the study their validation losses, stop
    on the budget, then sample the next trials or continue halving's survivors. [] when the run has no
    search or the search is finished (the round's mapped tasks then skip)."""
    study = load_study(run.run_uri)
    if study is None:
        return []
    existing = read_round(run.run_uri, round_number)
    if existing is not None:
        return _replayed(run, existing)
    resolved = store.read_json(layout.experiment_record(run.run_uri))
    jobs_uri = store.join(run.run_uri, "jobs.json")
    jobs = [PlannedJob.load(job, jobs_uri) for job in store.read_json(jobs_uri)]
    results = {job.job_id: committed_train(job) for job in jobs}
    losses: dict[str, list[float | None]] = {}
    for job in (job for job in jobs if job.round == round_number - 1):
        result = results[job.job_id]
        losses.setdefault(job.trial, []).append(result.eval_loss if result else None)
    spent = sum(device_hours_by_label([(job.label, results[job.job_id]) for job in jobs]).values())
    budget = resolved["experiment"].get("budget", {}).get("max_device_hours")
    was_finished = study.finished
    search = _search(resolved)
    decision = advance(study, search, round_number, losses, spent, budget)
    if was_finished:
        save_study(run.run_uri, study)
        return []
    evaluate = [
        PlannedJob.model_validate({**job.model_dump(mode="json"), "final": True})
        for job in jobs
        if job.round == round_number - 1 and job.trial in decision.evaluate_previous
    ]
    first = [job for job in jobs if job.round == 1]
    train = round_jobs(run.run_uri, resolved["hparams"][0], search, study, first, round_number, decision)
    plan = RoundPlan(round=round_number, train=train, evaluate=evaluate or _finals(train), study=study)
    return _finish_round(run, plan, jobs)


def final_jobs(run_uri: str, round_number: int) -> list[PlannedJob]:
    """The jobs round k scores: its final jobs (none for a halving rung that only decides who continues),
    or, when the budget stopped a halving search, the survivors' jobs of the round before."""
    plan = read_round(run_uri, round_number)
    return plan.evaluate if plan is not None else []


def job_of_task(run_uri: str, task_id: str, map_index: int) -> str | None:
    """The job id behind mapped task instance `task_id[map_index]` (`train`, `evaluate`,
    `round_<k>.train`, `round_<k>.evaluate`), from the rounds' planned lists (`search/round-<k>.json`).
    None for another task, or a run planned before rounds were recorded."""
    return mapped_jobs(run_uri).get((task_id, map_index))
