"""Charts as the pages embed them (drawn in the browser by `plugins/tunerflow_ui/static/tunerflow.js`),
and the curves a job's `metrics.jsonl` holds."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

from tasks.console.reading import lines_of, parse_all


class Series(BaseModel):
    """One line (points) or one set of bars (values)."""

    label: str = Field(description="Legend text.")
    points: list[tuple[float, float]] = Field(default_factory=list, description="(x, y) of a line.")
    values: list[float | None] = Field(default_factory=list, description="One bar per label.")
    dashed: bool = Field(False, description="Drawn dashed (eval loss beside train loss).")


class Chart(BaseModel):
    """A chart's JSON spec, as `tunerflow.js` reads it."""

    title: str = Field(description="What it shows.")
    y: str = Field(description="The y axis.")
    x: str = Field("step", description="The x axis (line charts).")
    kind: Literal["line", "bar"] = Field("line", description="Lines over x, or bars per label.")
    labels: list[str] = Field(default_factory=list, description="The bars' labels.")
    series: list[Series] = Field(default_factory=list, description="What is drawn.")

    @property
    def empty(self) -> bool:
        return not any(s.points or any(v is not None for v in s.values) for s in self.series)


def curves(data: bytes | None, keys: tuple[str, ...]) -> dict[str, list[tuple[float, float]]]:
    """(step, value) points of each of `keys` in a metrics.jsonl's records (train records carry `loss`,
    evaluation records `eval_loss`); records without a step are skipped."""
    points: dict[str, list[tuple[float, float]]] = {key: [] for key in keys}
    for record in parse_all(lines_of(data)):
        step = record.get("step")
        if not _number(step):
            continue
        for key in keys:
            if _number(record.get(key)):
                points[key].append((step, record[key]))
    return points


def _number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)
