"""The report's plots: training loss per job, and the primary metric per job. matplotlib is imported inside
the plotting functions only (Agg backend): the report is written by a light task."""

from __future__ import annotations

from pathlib import Path

from tasks.contracts.selection import LeaderboardRow
from tasks.pipeline.report_data import better, fmt, primary_value, read_curve

STATUS_COLOURS = {"succeeded": "#2b7bb9", "failed": "#c0392b", "reference": "#8c8c8c"}


def plot_loss(leaderboard: list[LeaderboardRow], path: Path) -> int:
    """Training loss per job (eval loss dashed in the same colour). Returns the number of curves drawn."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(9, 5), dpi=100)
    drawn = 0
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for row in leaderboard:
        train, evals = read_curve(row.metrics_jsonl)
        if not train and not evals:
            continue
        colour = colours[drawn % len(colours)]
        label = row.label or row.job_id
        if train:
            ax.plot(*zip(*train, strict=True), color=colour, label=label, linewidth=1.6)
        if evals:
            ax.plot(
                *zip(*evals, strict=True), color=colour, linestyle="--", marker="o", label=f"{label} (eval)"
            )
        drawn += 1
    if drawn:
        ax.set_xlabel("step")
        ax.set_ylabel("loss")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8, loc="upper right")
    else:
        ax.axis("off")
        ax.text(0.5, 0.5, "no training curves recorded", ha="center", va="center", fontsize=14)
    ax.set_title("Training loss per job")
    fig.tight_layout()
    fig.savefig(path, format="png")
    plt.close(fig)
    return drawn


def plot_metric(leaderboard: list[LeaderboardRow], primary: str, winner_id: str | None, path: Path) -> int:
    """Horizontal bars of the primary metric per job, reference rows in grey. Returns the bar count."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [(r, primary_value(r, primary)) for r in leaderboard]
    rows = [(r, v) for r, v in rows if v is not None]
    height = max(3.0, 0.45 * len(rows) + 1.5)
    fig, ax = plt.subplots(figsize=(9, height), dpi=100)
    if rows:
        labels = [r.label or r.job_id for r, _ in rows]
        values = [v for _, v in rows]
        colours = [STATUS_COLOURS[r.status] for r, _ in rows]
        edges = ["#e67e22" if winner_id and r.job_id == winner_id else "none" for r, _ in rows]
        positions = range(len(rows))
        bars = ax.barh(list(positions), values, color=colours, edgecolor=edges, linewidth=2.5)
        ax.set_yticks(list(positions), labels, fontsize=8)
        ax.invert_yaxis()
        ax.bar_label(bars, labels=[fmt(v) for v in values], fontsize=8, padding=3)
        ax.set_xlabel(f"{primary} ({better(primary)})")
        ax.margins(x=0.15)
        ax.grid(axis="x", alpha=0.3)
    else:
        ax.axis("off")
        ax.text(0.5, 0.5, f"no job has a {primary} score", ha="center", va="center", fontsize=14)
    ax.set_title(f"{primary} per job (grey: base-model reference, orange edge: winner)")
    fig.tight_layout()
    fig.savefig(path, format="png")
    plt.close(fig)
    return len(rows)
