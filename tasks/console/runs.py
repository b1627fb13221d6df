"""The run page: leaderboard, loss curves of every job on one chart, the primary metric per job, the
answers side by side, the export checks, the promotion decision and links to each task's log.

A run is read from its files (`experiment.json`, `jobs.json`, `references.json`, `leaderboard.json`,
`check_export/checks.json`, `promotion.json`, `champion/`); a run still going has no leaderboard yet,
so its planned jobs are listed as pending.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import quote

from pydantic import BaseModel, Field

from tasks.console.answers import AnswerColumn, AnswersPage, answers_page, eval_split_uri
from tasks.console.charts import Chart, Series
from tasks.console.reading import lines_of, parse_all, per_job, read_bytes, read_json
from tasks.contracts.promotion import PromotionDecision
from tasks.contracts.selection import Leaderboard, LeaderboardRow
from tasks.pipeline.report_data import better, curves, export_rows
from tasks.search.rounds import mapped_jobs
from tasks.storage import layout, store

DAG_ID = "finetune_experiment"
# A run's state by Airflow run id, for the run ids asked (Airflow's metadata DB on the api-server).
StateLookup = Callable[[list[str]], Mapping[str, str]]
_KEY = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")

# The run's own (unmapped) steps the page links to in Airflow's Grid, in graph order; the planning steps
# (plan_jobs, plan_references, final_jobs, plan_champion) are left out. tests/dags checks it against the DAG.
RUN_TASKS = (
    "validate_conf",
    "plan_merges",
    "select_best",
    "export",
    "check_export",
    "score_champion",
    "approve_promotion",
    "promote",
    "report",
    "publish_promotion",
    "track_mlflow",
)


class NotFound(LookupError):
    """No such experiment, run or job in the store (the pages answer 404)."""


def no_states(run_ids: list[str]) -> Mapping[str, str]:
    return {}


def key(name: str, what: str) -> str:
    """A name from a URL used as one store key part: a slug, never `..` or a path."""
    if not _KEY.fullmatch(name):
        raise NotFound(f"no {what} {name!r}")
    return name


def run_prefix(root: str, experiment: str, run: str) -> str:
    return store.join(root, "experiments", key(experiment, "experiment"), "runs", key(run, "run"))


def stored_state(summary: Any) -> str:
    """The state the store shows when Airflow's is not known: the report's summary is written last."""
    return "finished" if summary is not None else "incomplete"


def grid_path(run_id: str, task_id: str, map_index: int | None = None) -> str:
    """A task instance in Airflow 3's grid (its log), below Airflow's base URL."""
    mapped = f"/mapped/{map_index}" if map_index is not None else ""
    return f"/dags/{DAG_ID}/runs/{quote(run_id, safe='')}/tasks/{task_id}{mapped}"


class TaskLink(BaseModel):
    """A task instance's page in Airflow's grid."""

    task_id: str = Field(description="The task.")
    map_index: int | None = Field(None, description="Its map index, for a mapped task.")
    path: str = Field(description="Below Airflow's base URL.")


class BoardRow(BaseModel):
    """One job on the leaderboard."""

    rank: int | None = Field(description="1 for the winner; succeeded jobs only.")
    label: str = Field(description="`dataset|model|hparams`.")
    job_id: str = Field(description="The job's store key.")
    kind: str = Field(description="train, reference or merge (a merged candidate).")
    status: str = Field(
        description="succeeded, failed, reference, pruned (stopped by halving), or pending while it runs."
    )
    winner: bool = Field(description="The run's winner.")
    metrics: dict[str, float | None] = Field(description="Its scores.")
    error: str | None = Field(None, description="Why it failed.")
    train_loss: float | None = Field(None, description="Mean training loss.")
    eval_loss: float | None = Field(None, description="Validation loss at the end of training.")
    tokens_per_s: float | None = Field(None, description="Training throughput.")
    stopped: str | None = Field(None, description="Why training ended early (halving, early stopping, time).")
    round: int | None = Field(None, description="The search round of the row's last training.")
    device_hours: float | None = Field(None, description="devices x training hours.")
    cost: float | None = Field(None, description="device_hours x the deployment's price per device-hour.")
    parts: list[str] | None = Field(None, description="A merged candidate: the labels of its parts.")
    merge_method: str | None = Field(None, description="A merged candidate: how its parts were merged.")
    logs: list[TaskLink] = Field(default_factory=list, description="Its tasks' logs in Airflow.")


class RunPage(BaseModel):
    """Everything the run page shows."""

    experiment: str = Field(description="The experiment's name.")
    run: str = Field(description="The run's store key (slug of the run id).")
    run_id: str | None = Field(description="Airflow's run id.")
    description: str | None = Field(description="The experiment's description.")
    state: str = Field(description="Airflow's state of the run, else what the store shows.")
    started: str | None = Field(description="When the run's conf was validated (ISO-8601).")
    primary: str | None = Field(description="The metric ranked on.")
    direction: str = Field(description="Which way the primary metric points.")
    rank_on: str = Field(description="pytorch or the export format ranked on.")
    metric_names: list[str] = Field(description="The leaderboard's metric columns, primary first.")
    rows: list[BoardRow] = Field(description="The leaderboard.")
    search: str | None = Field(None, description="How the search ended: trials, rounds, a budget stop.")
    device_hours: float | None = Field(None, description="Every job's device-hours together.")
    cost: float | None = Field(None, description="Every job's cost together.")
    currency: str | None = Field(None, description="Currency of the costs, when a price is set.")
    winner: str | None = Field(description="The winner's label.")
    loss_chart: Chart = Field(description="Train and eval loss of every job.")
    metric_chart: Chart = Field(description="The primary metric per job.")
    answers: AnswersPage = Field(description="The answers side by side, one page of questions.")
    exports: list[dict[str, Any]] = Field(description="The export checks, one row per format.")
    exports_passed: bool | None = Field(description="Whether the export checks passed.")
    promotion: PromotionDecision | None = Field(description="The promotion decision.")
    run_tasks: list[TaskLink] = Field(description="The run's unmapped tasks in Airflow.")


def planned_jobs(prefix: str) -> tuple[list[dict], list[dict]]:
    jobs, references = (read_json(store.join(prefix, name)) for name in ("jobs.json", "references.json"))
    return jobs if isinstance(jobs, list) else [], references if isinstance(references, list) else []


def task_links(run_id: str | None, kind: str, index: int | None) -> list[TaskLink]:
    """The mapped task instances of a job of a run planned before search rounds were recorded: its
    position in `jobs.json` (train, evaluate) or in `references.json` (score_base) is its map index, as
    the planning task returned the list."""
    if run_id is None or index is None:
        return []
    tasks = {"train": ("train", "evaluate"), "merge": ("merge", "score_merge")}.get(kind, ("score_base",))
    return [TaskLink(task_id=t, map_index=index, path=grid_path(run_id, t, index)) for t in tasks]


def job_task_links(prefix: str, run_id: str | None) -> dict[str, list[TaskLink]]:
    """job id -> its mapped task instances in every search round (`search/round-<k>.json`): a task's
    map index is the job's place in the list its round's planning returned. A halving trial's row links
    to its furthest round's tasks."""
    if run_id is None:
        return {}
    links: dict[str, list[TaskLink]] = {}
    for (task_id, index), job_id in mapped_jobs(prefix).items():
        links.setdefault(job_id, []).append(
            TaskLink(task_id=task_id, map_index=index, path=grid_path(run_id, task_id, index))
        )
    return links


def _board_row(row: LeaderboardRow, winner: str | None, links: list[TaskLink]) -> BoardRow:
    train = row.train
    return BoardRow(
        rank=row.rank,
        label=row.label,
        job_id=row.job_id,
        kind=row.kind,
        status=row.status,
        winner=row.job_id == winner,
        metrics=row.metrics,
        error=row.error,
        train_loss=train.train_loss if train else None,
        eval_loss=train.eval_loss if train else None,
        tokens_per_s=train.tokens_per_s if train else None,
        stopped=row.stopped or (train.stopped if train else None),
        round=row.round,
        device_hours=row.device_hours,
        cost=row.cost,
        parts=row.parts,
        merge_method=row.merge_method,
        logs=links,
    )


def leaderboard_rows(
    board: Leaderboard | None,
    jobs: list[dict],
    references: list[dict],
    run_id: str | None,
    rounds: dict[str, list[TaskLink]] | None = None,
    merges: list[dict] | None = None,
) -> list[BoardRow]:
    """The leaderboard's rows in its order, or the planned jobs as pending before it exists. `rounds`:
    the search rounds' task links by job id (`job_task_links`), which win over a position in jobs.json."""
    index = {job["job_id"]: i for i, job in enumerate(jobs)}
    index |= {job["job_id"]: i for i, job in enumerate(references)}
    index |= {job["job_id"]: i for i, job in enumerate(merges or [])}
    rounds = rounds or {}

    def links(job_id: str, kind: str) -> list[TaskLink]:
        return rounds.get(job_id) or task_links(run_id, kind, index.get(job_id))

    if board is None:
        return [
            BoardRow(
                rank=None,
                label=job["label"],
                job_id=job["job_id"],
                kind=job["kind"],
                status="pending",
                winner=False,
                metrics={},
                logs=links(job["job_id"], job["kind"]),
            )
            for job in [*jobs, *references]
        ]
    winner = board.winner.job_id if board.winner else None
    return [_board_row(r, winner, links(r.job_id, r.kind)) for r in board.rows]


def loss_chart(prefix: str, rows: list[BoardRow]) -> Chart:
    """Every trained job's train loss and (dashed) eval loss over steps, on one chart."""
    files = per_job(prefix, "train/metrics.jsonl")
    series = []
    for row in rows:
        if row.kind != "train":
            continue  # references train nothing; a merge's curves are its parts'
        points = curves(parse_all(lines_of(files.get(row.job_id))), ("loss", "eval_loss"))
        series.append(Series(label=f"{row.label} train", points=points["loss"]))
        if points["eval_loss"]:
            series.append(Series(label=f"{row.label} eval", points=points["eval_loss"], dashed=True))
    return Chart(title="Train and eval loss", y="loss", series=[s for s in series if s.points])


def metric_chart(primary: str | None, rows: list[BoardRow]) -> Chart:
    scored = [row for row in rows if primary and row.metrics.get(primary) is not None]
    return Chart(
        title=f"{primary} per job",
        y=primary or "",
        kind="bar",
        labels=[row.label for row in scored],
        series=[Series(label=primary or "", values=[row.metrics[primary] for row in scored])],
    )


def answer_columns(prefix: str, rows: list[BoardRow]) -> list[tuple[AnswerColumn, bytes | None]]:
    """Base models first, then every job that was scored (leaderboard order), then the champion; each
    with its predictions.jsonl."""
    predictions = per_job(prefix, "evaluate/predictions.jsonl")
    ordered = [r for r in rows if r.kind == "reference"] + [r for r in rows if r.kind != "reference"]
    columns = [
        (
            AnswerColumn(
                label=row.label,
                kind="reference" if row.kind == "reference" else "job",
                job_id=row.job_id,
                winner=row.winner,
            ),
            predictions.get(row.job_id),
        )
        for row in ordered
        if row.status not in ("failed", "pruned")
    ]
    champion = read_json(store.join(prefix, "champion", "evaluate.json"))
    if isinstance(champion, dict) and champion.get("output"):
        label = champion.get("label") or f"champion v{champion.get('champion_version')}"
        answers = read_bytes(store.join(champion["output"], "predictions.jsonl"))
        columns.append((AnswerColumn(label=label, kind="champion"), answers))
    return columns


def _primary_metric(record: dict[str, Any], board: Leaderboard | None) -> str | None:
    if board is not None:
        return board.primary
    return ((record.get("experiment") or {}).get("scoring") or {}).get("primary")


def _metric_names(primary: str | None, rows: list[BoardRow]) -> list[str]:
    names = [primary] if primary else []
    for row in rows:
        names += [name for name in row.metrics if name not in names]
    return names


def run_page(root: str, experiment: str, run: str, states: StateLookup = no_states, page: int = 1) -> RunPage:
    """The run page of `experiments/<experiment>/runs/<run>`; NotFound when the run has no files."""
    prefix = run_prefix(root, experiment, run)
    record = read_json(layout.experiment_record(prefix))
    raw_board = read_json(store.join(prefix, "leaderboard.json"))
    if record is None and raw_board is None:
        raise NotFound(f"no run {run!r} in experiment {experiment!r}")
    record = record or {}
    board = Leaderboard.load(raw_board, "leaderboard.json") if raw_board is not None else None
    run_id = record.get("run_id")
    jobs, references = planned_jobs(prefix)
    merges = read_json(store.join(prefix, "merges.json"))
    rounds = job_task_links(prefix, run_id)
    rows = leaderboard_rows(
        board, jobs, references, run_id, rounds, merges if isinstance(merges, list) else []
    )
    primary = _primary_metric(record, board)
    split = next((eval_split_uri(layout.job(prefix, r.job_id)) for r in rows if r.status != "failed"), None)
    checks = read_json(store.join(prefix, "check_export", "checks.json"))
    promotion = read_json(store.join(prefix, "promotion.json"))
    summary = read_json(store.join(prefix, "summary.json"))
    state = (states([run_id]) if run_id else {}).get(run_id) or stored_state(summary)
    return RunPage(
        experiment=experiment,
        run=run,
        run_id=run_id,
        description=(record.get("experiment") or {}).get("description"),
        state=state,
        started=store.modified_at(layout.experiment_record(prefix)) if record else None,
        primary=primary,
        direction=better(primary) if primary else "",
        rank_on=board.rank_on if board else "pytorch",
        metric_names=_metric_names(primary, rows),
        rows=rows,
        winner=board.winner.label if board and board.winner else None,
        search=board.search if board else None,
        device_hours=board.device_hours if board else None,
        cost=board.cost if board else None,
        currency=board.currency if board else None,
        loss_chart=loss_chart(prefix, rows),
        metric_chart=metric_chart(primary, rows),
        answers=answers_page(answer_columns(prefix, rows), read_bytes(split), page),
        exports=export_rows(checks),
        exports_passed=checks.get("passed") if isinstance(checks, dict) else None,
        promotion=PromotionDecision.load(promotion, "promotion.json") if promotion else None,
        run_tasks=[TaskLink(task_id=t, path=grid_path(run_id, t)) for t in RUN_TASKS] if run_id else [],
    )
