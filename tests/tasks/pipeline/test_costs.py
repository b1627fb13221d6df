"""Device-hours and cost on the leaderboard: from the train results and the deployment's price."""

from __future__ import annotations

import pytest

from tasks.contracts.selection import Leaderboard, LeaderboardRow
from tasks.contracts.train import TrainResult
from tasks.pipeline.costs import add_costs, device_prices


def _row(label: str, device: str | None, hours: float | None) -> LeaderboardRow:
    train = TrainResult(adapter_uri="file:///a", model_uri=None, device=device, devices=2, device_hours=hours)
    return LeaderboardRow(
        job_id=label,
        label=label,
        kind="train",
        train=train,
        metrics={},
        scored_on=None,
        metrics_jsonl=None,
        status="succeeded",
    )


def test_no_price_set_means_device_hours_without_cost():
    board = add_costs(Leaderboard(primary="rouge_l", rows=[_row("a", "cpu", 0.25)]), device_prices({}))
    assert board.rows[0].device_hours == 0.25
    assert board.rows[0].cost is None
    assert (board.device_hours, board.cost, board.currency) == (0.25, None, None)


def test_a_price_per_device_prices_each_row_by_its_device():
    prices = device_prices(
        {"TUNERFLOW_DEVICE_HOUR_PRICE": "cuda=2.50, cpu=0.04", "TUNERFLOW_CURRENCY": "EUR"}
    )
    rows = [_row("gpu", "cuda", 2.0), _row("cpu", "cpu", 0.5), _row("unknown", "tpu", 1.0)]
    board = add_costs(Leaderboard(primary="rouge_l", rows=rows), prices)
    assert [row.cost for row in board.rows] == [5.0, 0.02, None]
    assert board.device_hours == 3.5
    assert board.cost == 5.02
    assert board.currency == "EUR"


def test_one_price_covers_every_device_and_rows_without_training_are_left_out():
    reference = _row("base", None, None).model_copy(update={"train": None, "kind": "reference"})
    board = add_costs(
        Leaderboard(primary="rouge_l", rows=[_row("a", "cuda", 1.5), reference]),
        device_prices({"TUNERFLOW_DEVICE_HOUR_PRICE": "3"}),
    )
    assert [row.cost for row in board.rows] == [4.5, None]
    assert (board.device_hours, board.cost, board.currency) == (1.5, 4.5, "USD")


def test_a_row_that_sums_its_rounds_keeps_its_own_device_hours():
    row = _row("trial", "cpu", 0.1).model_copy(update={"device_hours": 0.3})
    board = add_costs(
        Leaderboard(primary="rouge_l", rows=[row]), device_prices({"TUNERFLOW_DEVICE_HOUR_PRICE": "1"})
    )
    assert board.rows[0].cost == 0.3


@pytest.mark.parametrize(
    ("value", "named"),
    [
        ("cheap", "the price 'cheap'"),
        ("cuda=-1", "the price of cuda '-1'"),
        ("cuda", "'cuda' is not"),
        ("cuda=nan", "the price of cuda 'nan'"),
    ],
)
def test_a_bad_price_names_the_variable_and_the_value(value, named):
    with pytest.raises(ValueError) as error:
        device_prices({"TUNERFLOW_DEVICE_HOUR_PRICE": value})
    assert "TUNERFLOW_DEVICE_HOUR_PRICE" in str(error.value)
    assert named in str(error.value)
