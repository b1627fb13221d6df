"""What a run's training spent: device-hours per job and in all, and money where the deployment sets a
price per device-hour.

A price is the deployment's, not the experiment's (the same conf costs more on rented GPUs than on
owned CPUs), so it comes from the worker's environment:

- `TUNERFLOW_DEVICE_HOUR_PRICE`: one number for every device (`2.5`), or a price per device
  (`cuda=2.50,cpu=0.04`); a device without a price has no cost.
- `TUNERFLOW_CURRENCY`: the currency the report and the pages print (default `USD`).

Device-hours come from each job's committed train result (GPUs x hours, CPU cores x hours on CPU).
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping

from pydantic import BaseModel, Field

from tasks.contracts.selection import Leaderboard, LeaderboardRow

PRICE_VARIABLE = "TUNERFLOW_DEVICE_HOUR_PRICE"
CURRENCY_VARIABLE = "TUNERFLOW_CURRENCY"
EVERY_DEVICE = "*"


class DevicePrices(BaseModel):
    """The deployment's price of one device-hour, per device type."""

    per_device: dict[str, float] = Field(description="Device type (cuda, cpu, or * for any) -> price.")
    currency: str = Field(description="Currency of the prices.")

    def price(self, device: str | None) -> float | None:
        """The price of one hour of `device`, or None when the deployment set none for it."""
        return self.per_device.get(device or "", self.per_device.get(EVERY_DEVICE))


def _price(text: str, where: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not math.isfinite(value) or value < 0:
        raise ValueError(
            f"{PRICE_VARIABLE}: {where} '{text}' is not a price; give a number >= 0, e.g. "
            f"{PRICE_VARIABLE}=2.5 or {PRICE_VARIABLE}=cuda=2.50,cpu=0.04"
        )
    return value


def device_prices(environ: Mapping[str, str] = os.environ) -> DevicePrices | None:
    """The prices the deployment set, or None when it set none."""
    text = environ.get(PRICE_VARIABLE, "").strip()
    if not text:
        return None
    per_device = {}
    if "=" not in text:
        per_device[EVERY_DEVICE] = _price(text, "the price")
    else:
        for item in filter(None, (part.strip() for part in text.split(","))):
            device, _, value = item.partition("=")
            if not device.strip() or not value.strip():
                raise ValueError(f"{PRICE_VARIABLE}: '{item}' is not `device=price`, e.g. cuda=2.50")
            per_device[device.strip().lower()] = _price(value.strip(), f"the price of {device.strip()}")
    currency = environ.get(CURRENCY_VARIABLE, "").strip() or "USD"
    return DevicePrices(per_device=per_device, currency=currency)


def _row_hours(row: LeaderboardRow) -> float | None:
    if row.device_hours is not None:
        return row.device_hours
    return row.train.device_hours if row.train else None


def add_costs(board: Leaderboard, prices: DevicePrices | None) -> Leaderboard:
    """The board with every row's device-hours and cost, and the run's totals, filled in."""
    hours_total = cost_total = 0.0
    any_hours = any_cost = False
    for row in board.rows:
        hours = _row_hours(row)
        row.device_hours = hours
        if hours is None:
            continue
        hours_total, any_hours = hours_total + hours, True
        price = prices.price(row.train.device if row.train else None) if prices else None
        if price is not None:
            row.cost = round(hours * price, 4)
            cost_total, any_cost = cost_total + row.cost, True
    board.device_hours = round(hours_total, 6) if any_hours else None
    board.cost = round(cost_total, 4) if any_cost else None
    board.currency = prices.currency if prices and any_cost else None
    return board
