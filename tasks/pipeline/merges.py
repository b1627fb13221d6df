"""Planning the merged candidates: after selection, the top_k ranked jobs of each base model become one
more job whose "training" is the merge step (`python -m tasks.merge`) and whose evaluation is a job's.

Which jobs are merged together: the succeeded training jobs of one base model trained on one dataset,
best ranked first, so the candidate is scored on the eval set of the one dataset its parts were trained
on. With a shared eval set (`scoring.eval_dataset` or `scoring.eval_questions`) every job is scored on
the same rows, so the parts are the base model's best jobs whatever dataset they trained on. A group
with fewer than two succeeded jobs has no candidate.

A candidate's job is `<dataset>--<model>--merge-<method>`, labelled `<dataset>|<model>|merge-<method>`
(its parts' datasets joined with `+` when they differ). Its specs are `merge.json` (a `MergeSpec`: the
merge step's spec, named after its step like every spec) and `evaluate.json` (the best part's, pointed at
the candidate's `train/` output), and the list is written to `merges.json`, as `jobs.json` is.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from tasks.config.experiment import load_experiment
from tasks.config.merge import MergeConfig
from tasks.config.scoring import ScoringConfig
from tasks.contracts.evaluate import EvaluateSpec
from tasks.contracts.merge import MergePart, MergeSpec
from tasks.contracts.planning import PlannedJob, RunInfo, step_argv
from tasks.contracts.selection import Leaderboard, LeaderboardRow
from tasks.contracts.train import TrainSpec
from tasks.storage import layout, store

log = logging.getLogger("tunerflow.merges")


@dataclass(frozen=True)
class _Ranked:
    """A succeeded training job with the specs it was trained and scored with."""

    row: LeaderboardRow
    train: TrainSpec
    evaluate: EvaluateSpec


def _ranked(jobs: list[PlannedJob], board: Leaderboard) -> list[_Ranked]:
    """The succeeded final training jobs, best ranked first, with their specs."""
    planned = {job.job_id: job for job in jobs if job.kind == "train" and job.final}
    rows = [
        row
        for row in board.rows
        if row.kind == "train"
        and row.status == "succeeded"
        and row.rank is not None
        and row.job_id in planned
    ]
    ranked = []
    for row in sorted(rows, key=lambda r: r.rank):
        job = planned[row.job_id]
        train = TrainSpec.load(store.read_json(job.train_spec), job.train_spec)
        evaluate = EvaluateSpec.load(store.read_json(job.evaluate_spec), job.evaluate_spec)
        ranked.append(_Ranked(row, train, evaluate))
    return ranked


def merge_groups(ranked: list[_Ranked], top_k: int, shared_eval_set: bool) -> dict[str, list[_Ranked]]:
    """The top_k jobs of each base model (and dataset, without a shared eval set), best first."""
    groups: dict[str, list[_Ranked]] = {}
    for job in ranked:
        key = job.train.model.name if shared_eval_set else f"{job.train.dataset.name}|{job.train.model.name}"
        group = groups.setdefault(key, [])
        if len(group) < top_k:
            group.append(job)
    return groups


def _parts(group: list[_Ranked]) -> list[MergePart]:
    parts = []
    for job in group:
        weights = job.row.train
        parts.append(
            MergePart(
                label=job.row.label,
                job_id=job.row.job_id,
                **({"adapter_uri": weights.adapter_uri} if weights.adapter_uri else {}),
                **({"model_uri": weights.model_uri} if weights.model_uri else {}),
            )
        )
    if len({part.adapter_uri is None for part in parts}) > 1:
        kinds = ", ".join(f"{p.label}: {'adapter' if p.adapter_uri else 'full model'}" for p in parts)
        raise ValueError(
            f"merge: the best jobs of {group[0].train.model.name} mix LoRA adapters and full models "
            f"({kinds}); only jobs of one training.method can be merged: check their committed train results"
        )
    return parts


def _candidate(run: RunInfo, merge: MergeConfig, group: list[_Ranked]) -> PlannedJob:
    best = group[0]
    parts = _parts(group)
    datasets = "+".join(dict.fromkeys(job.train.dataset.name for job in group))
    model = best.train.model.name
    label = f"{datasets}|{model}|merge-{merge.method}"
    job_id = store.slug(f"{datasets}--{model}--merge-{merge.method}")
    job_prefix = layout.job(run.run_uri, job_id)
    output = layout.step(job_prefix, "train")
    shared = best.train.model_dump(mode="json", include={"store_root", "dataset", "model", "eval_set"})
    spec = MergeSpec(
        **shared,
        job_id=job_id,
        label=label,
        output=output,
        training=best.train.training,
        method=merge.method,
        parts=parts,
        weights=merge.part_weights(len(parts)),
        density=merge.density,
        seed=merge.seed,
    )
    # Scored exactly as the best part was (rows, metrics, export settings), on the candidate's weights.
    scored = best.evaluate.model_dump(mode="json", exclude={"hparams"})
    evaluate = EvaluateSpec.model_validate(
        {
            **scored,
            "job_id": job_id,
            "label": label,
            "output": layout.step(job_prefix, "evaluate"),
            "train_output": output,
        }
    )
    uris = {}
    for step, written in (("merge", spec), ("evaluate", evaluate)):
        uri = store.join(job_prefix, f"{step}.json")
        store.write_json(uri, written.model_dump(mode="json"))
        uris[step] = uri
    return PlannedJob(
        job_id=job_id,
        label=label,
        kind="merge",
        train_spec=uris["merge"],
        train_argv=step_argv("merge", uris["merge"]),
        evaluate_spec=uris["evaluate"],
        evaluate_argv=step_argv("evaluate", uris["evaluate"]),
    )


def plan_merges(run: RunInfo, jobs: list[PlannedJob], board: Leaderboard) -> list[PlannedJob]:
    """One merged candidate per base model (and dataset) with `merge.enabled`, from the leaderboard's
    ranked jobs; written to `merges.json`. Raises ValueError when a group mixes adapters and full models."""
    experiment = load_experiment(run.run_uri)
    merge = MergeConfig.model_validate(experiment["merge"])
    scoring = ScoringConfig.model_validate(experiment["scoring"])
    candidates = []
    if merge.enabled:
        shared_eval_set = scoring.eval_dataset is not None or bool(scoring.eval_questions)
        for key, group in merge_groups(_ranked(jobs, board), merge.top_k, shared_eval_set).items():
            if len(group) < 2:
                log.info("merge: %s has one succeeded job, nothing to merge", key)
                continue
            candidates.append(_candidate(run, merge, group))
    store.write_json(
        store.join(run.run_uri, "merges.json"), [job.model_dump(mode="json") for job in candidates]
    )
    return candidates
