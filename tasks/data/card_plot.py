"""token_lengths.png of the dataset card: one step histogram of token lengths per tokenizer.

matplotlib is imported inside `plot_lengths` only (Agg backend).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from tasks.data.length_stats import EDGES, TOP, LengthHistogram


def _stairs(hist: LengthHistogram) -> tuple[list[float], list[float]]:
    """(edges, rows per quarter octave) for lengths >= 1: log axes cannot show 0, and the width-1 bins
    below 17 would look taller than the quarter-octave ones if raw counts were drawn."""
    upper = max(TOP * 2**0.25, (hist.max or 0) + 1)
    edges = [float(e) for e in EDGES[1:]] + [float(upper)]
    counts = hist.counts[1:]
    heights = [
        float(n) / (4 * math.log2(hi / lo)) for n, lo, hi in zip(counts, edges[:-1], edges[1:], strict=True)
    ]
    return edges, heights


def plot_lengths(histograms: dict[str, LengthHistogram], stats: dict[str, Any], path: Path) -> int:
    """One step histogram per tokenizer on a log x axis. Returns the number of histograms drawn."""
    import matplotlib  # heavy: loaded only when a card is drawn

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(9, 5), dpi=100)
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    low, high = math.inf, 0.0
    for i, (name, hist) in enumerate(histograms.items()):
        edges, heights = _stairs(hist)
        zeros = int(hist.counts[0])
        label = f"{name} (n={hist.count:,}" + (f", {zeros:,} empty not shown)" if zeros else ")")
        ax.stairs(heights, edges, color=colours[i % len(colours)], label=label, linewidth=1.6)
        filled = [j for j, h in enumerate(heights) if h]
        if filled:
            low, high = min(low, edges[filled[0]]), max(high, edges[filled[-1] + 1])
    settings = stats.get("settings") or {}
    for key in ("min_tokens", "max_tokens"):
        value = settings.get(key)
        if isinstance(value, int) and value > 1:
            ax.axvline(value, color="#8c8c8c", linestyle="--", linewidth=1, label=f"{key} = {value:,}")
            low, high = min(low, value), max(high, value)  # a limit line off the axis would only confuse
    ax.set_xscale("log")
    if high > low:
        ax.set_xlim(low / 1.2, high * 1.2)
    ax.set_xlabel("tokens per row (log scale)")
    ax.set_ylabel("rows per ¼ octave")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="upper right")
    ax.set_title(f"Token lengths — {stats['name']} {stats['version']}")
    fig.tight_layout()
    fig.savefig(path, format="png")
    plt.close(fig)
    return len(histograms)
