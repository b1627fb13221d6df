"""The experiments page: every experiment in the store with its runs (state, winner, primary metric,
when) and the winner's primary metric over the runs (quality over retrains)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field

from tasks.console.charts import Chart, Series
from tasks.console.reading import json_of, read_many, side_by_side
from tasks.console.runs import StateLookup, no_states, stored_state
from tasks.storage import layout, store


class RunSummary(BaseModel):
    """One run as the experiments page lists it."""

    run: str = Field(description="The run's store key (slug of the run id).")
    run_id: str | None = Field(description="Airflow's run id.")
    state: str = Field(description="Airflow's state of the run, else what the store shows.")
    started: str | None = Field(description="When its conf was validated (ISO-8601).")
    winner: str | None = Field(description="The winning job's label.")
    primary: str | None = Field(description="The metric ranked on.")
    value: float | None = Field(description="The winner's primary metric.")


class ExperimentView(BaseModel):
    """An experiment and its runs, oldest first."""

    name: str = Field(description="The experiment's name.")
    description: str | None = Field(description="From its latest run's conf.")
    runs: list[RunSummary] = Field(description="Its runs in the order they started.")
    chart: Chart = Field(description="The winner's primary metric per run.")


class ExperimentsPage(BaseModel):
    """Every experiment in the store."""

    experiments: list[ExperimentView] = Field(description="By name.")


def _summary(run: str, files: list[Any], started: str | None, states: dict) -> tuple[RunSummary, str | None]:
    record, board, summary = files
    record, board = record or {}, board or {}
    winner = board.get("winner") or {}
    primary = board.get("primary") or ((record.get("experiment") or {}).get("scoring") or {}).get("primary")
    run_id = record.get("run_id")
    return RunSummary(
        run=run,
        run_id=run_id,
        state=states.get(run_id) or stored_state(summary),
        started=started,
        winner=winner.get("label"),
        primary=primary,
        value=(winner.get("metrics") or {}).get(primary) if primary else None,
    ), (record.get("experiment") or {}).get("description")


def _chart(runs: list[RunSummary]) -> Chart:
    primary = next((run.primary for run in reversed(runs) if run.primary), None) or "primary metric"
    points = [(float(i), run.value) for i, run in enumerate(runs, 1) if run.value is not None]
    return Chart(
        title=f"Winner's {primary} per run", y=primary, x="run", series=[Series(label=primary, points=points)]
    )


def experiments_page(root: str, states: StateLookup = no_states) -> ExperimentsPage:
    """Every experiment with its runs, read side by side (three small files and a timestamp per run)."""
    base = store.join(root, "experiments")
    names = store.list_dir(base)
    listed = side_by_side(lambda name: store.list_dir(store.join(base, name, "runs")), names)
    runs = [(name, run) for name, found in zip(names, listed, strict=True) for run in found]
    prefixes = [store.join(base, name, "runs", run) for name, run in runs]
    wanted = [
        store.join(prefix, file)
        for prefix in prefixes
        for file in ("experiment.json", "leaderboard.json", "summary.json")
    ]
    files = [json_of(data) for data in read_many(wanted)]
    started = side_by_side(store.modified_at, [layout.experiment_record(prefix) for prefix in prefixes])
    run_ids = [(record or {}).get("run_id") for record in files[::3]]
    known = dict(states([run_id for run_id in run_ids if run_id]))
    grouped: dict[str, list[tuple[RunSummary, str | None]]] = {name: [] for name in names}
    for i, (name, run) in enumerate(runs):
        grouped[name].append(_summary(run, files[3 * i : 3 * i + 3], started[i], known))
    experiments = []
    for name, listed in grouped.items():
        listed.sort(key=lambda item: item[0].started or "")
        summaries = [summary for summary, _ in listed]
        description = next((d for _, d in reversed(listed) if d), None)
        experiments.append(
            ExperimentView(name=name, description=description, runs=summaries, chart=_chart(summaries))
        )
    return ExperimentsPage(experiments=experiments)
