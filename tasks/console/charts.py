"""Charts as the pages embed them (drawn in the browser by `plugins/tunerflow_ui/static/tunerflow.js`)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field


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
