"""The Experiments page's view model: runs in the order they started, and the winner's primary metric
across them (quality over retrains)."""

from __future__ import annotations

import os

from tasks.console.experiments import experiments_page
from tasks.storage import layout, store
from tests.fixtures.console_store import FakeJob, FakeRun, build_run


def test_the_winners_primary_metric_is_charted_across_runs_in_start_order(tmp_path):
    root = store.to_uri(tmp_path / "store")
    # Written newest first, so the order on the page must come from when each run started.
    runs = [
        ("scheduled__2026-03-01T00:00:00+00:00", 0.9, 3_000),
        ("scheduled__2026-02-01T00:00:00+00:00", 0.7, 2_000),
        ("manual__2026-01-01T00:00:00+00:00", 0.6, 1_000),
    ]
    for run_id, score, started in runs:
        prefix = build_run(root, FakeRun(run_id=run_id, jobs=[FakeJob("a", score), FakeJob("b", score / 2)]))
        record = store.local_path(layout.experiment_record(prefix))
        os.utime(record, (1_700_000_000 + started, 1_700_000_000 + started))

    [experiment] = experiments_page(root).experiments
    assert [run.run_id for run in experiment.runs] == [r[0] for r in reversed(runs)]
    assert [run.value for run in experiment.runs] == [0.6, 0.7, 0.9]
    [series] = experiment.chart.series
    assert series.points == [(1.0, 0.6), (2.0, 0.7), (3.0, 0.9)]
    assert experiment.chart.y == "rouge_l"


def test_a_run_without_a_winner_is_listed_but_not_charted(tmp_path):
    root = store.to_uri(tmp_path / "store")
    build_run(root, FakeRun(run_id="manual__1", jobs=[FakeJob("a", 0.5)]))
    build_run(root, FakeRun(run_id="manual__2", jobs=[FakeJob("broken", error="train: out of memory")]))

    [experiment] = experiments_page(root).experiments
    assert len(experiment.runs) == 2
    assert len(experiment.chart.series[0].points) == 1
