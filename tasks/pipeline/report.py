"""The experiment report: one self-contained HTML page plus two plots, committed under `<run>/report`.

Job:
    {"output": "<run prefix>/report", "experiment": {experiment conf}, "primary": "rouge_l",
     "leaderboard": [{"rank", "job_id", "label", "status": "succeeded" | "failed" | "reference",
                      "metrics": {...}, "error": str | None,
                      "train": {"train_loss", "steps", "runtime_s", "tokens_per_s"} | None,
                      "metrics_jsonl": uri | None}, ...],
     "winner": {"job_id", "label", "metrics", ...} | None,
     "export_checks": {...} | None, "promotion": {tasks.registry.promotion result} | None}
Result:
    {"report_uri": ".../index.html", "plots": [".../loss.png", ".../metrics.png"]}

`export_checks` is the tasks.exporting.checks result ({"passed", "pytorch": {size_bytes, latency}, "formats":
{fmt: check}}) but is read leniently: {"checks": [check, ...]} or {fmt: check} work too; a check may hold
size_bytes | size_mb, latency | latency_ms {"p50_ms" | "p50", "p95_ms" | "p95"} | latency_p50_ms /
latency_p95_ms, metric_drop, passed, problems | reasons | reason; other scalars are listed as notes.

matplotlib is imported inside the plotting functions only (Agg backend).
"""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime
from html import escape
from pathlib import Path
from typing import Any

from tasks.scoring.plugins import lower_is_better
from tasks.storage import store

STATUS_COLOURS = {"succeeded": "#2b7bb9", "failed": "#c0392b", "reference": "#8c8c8c"}


def esc(value: Any) -> str:
    return escape("" if value is None else str(value), quote=True)


def fmt(value: Any, digits: int = 4) -> str:
    if value is None:
        return "–"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:.{digits}g}" if abs(value) < 1e6 else f"{value:.3e}"
    return str(value)


# -- data -------------------------------------------------------------------------------------------


def read_curve(uri: str | None) -> tuple[list[tuple[float, float]], list[tuple[float, float]]]:
    """(train loss points, eval loss points) from a metrics.jsonl; empty lists when unreadable."""
    train: list[tuple[float, float]] = []
    evals: list[tuple[float, float]] = []
    if not uri:
        return train, evals
    try:
        path = store.fetch(uri)
        lines = path.read_text().splitlines() if path.is_file() else []
    except (OSError, ValueError, store.StoreError):
        return train, evals
    for line in lines:
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            continue
        step = record.get("step")
        if not isinstance(step, int | float):
            continue
        if isinstance(record.get("loss"), int | float):
            train.append((step, record["loss"]))
        if isinstance(record.get("eval_loss"), int | float):
            evals.append((step, record["eval_loss"]))
    return train, evals


def primary_value(row: dict[str, Any], primary: str) -> float | None:
    value = (row.get("metrics") or {}).get(primary)
    return value if isinstance(value, int | float) and not isinstance(value, bool) else None


def better(primary: str) -> str:
    """Which way the primary metric points, for labels. The report must render even when the metric
    is no longer known (a plugin removed since the run), so that case is said, not raised."""
    try:
        return "lower is better" if lower_is_better(primary) else "higher is better"
    except ValueError:
        return "unknown metric: direction not known"


def _first(mapping: dict[str, Any], *keys: str) -> Any:
    return next((mapping[k] for k in keys if mapping.get(k) is not None), None)


def export_rows(checks: dict[str, Any] | list[Any] | None) -> list[dict[str, Any]]:
    """Normalise the export checks into one row per format."""
    if not checks:
        return []
    if isinstance(checks, list):
        items = [(c.get("format") or c.get("name") or f"#{i}", c) for i, c in enumerate(checks)]
    elif isinstance(checks.get("formats"), dict):
        items = list(checks["formats"].items())
        if isinstance(checks.get("pytorch"), dict):
            items.insert(0, ("pytorch (reference)", checks["pytorch"]))
    elif isinstance(checks.get("formats"), list) or isinstance(checks.get("checks"), list):
        return export_rows(checks.get("formats") or checks.get("checks"))
    else:
        items = [(k, v) for k, v in checks.items() if isinstance(v, dict)]
    rows = []
    for name, check in items:
        latency = check.get("latency_ms") or check.get("latency")
        latency = latency if isinstance(latency, dict) else {}
        size = check.get("size_bytes")
        size_mb = check.get("size_mb")
        if size_mb is None and isinstance(size, int | float):
            size_mb = size / 1e6
        reasons = check.get("reasons") or check.get("problems") or check.get("reason") or []
        if isinstance(reasons, str):
            reasons = [reasons]
        known = {
            "format",
            "name",
            "latency_ms",
            "latency",
            "metrics",
            "size_bytes",
            "size_mb",
            "reasons",
            "problems",
            "reason",
        }
        known |= {"latency_p50_ms", "latency_p95_ms", "p50_ms", "p95_ms", "metric_drop", "passed", "uri"}
        details = {
            k: v for k, v in check.items() if k not in known and isinstance(v, int | float | str | bool)
        }
        rows.append(
            {
                "format": name,
                "size_mb": size_mb,
                "p50": _first(latency, "p50", "p50_ms") or _first(check, "latency_p50_ms", "p50_ms"),
                "p95": _first(latency, "p95", "p95_ms") or _first(check, "latency_p95_ms", "p95_ms"),
                "metric_drop": check.get("metric_drop"),
                "passed": check.get("passed"),
                "reasons": [str(r) for r in reasons],
                "details": details,
            }
        )
    return rows


# -- plots ------------------------------------------------------------------------------------------


def plot_loss(leaderboard: list[dict[str, Any]], path: Path) -> int:
    """Training loss per job (eval loss dashed in the same colour). Returns the number of curves drawn."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(9, 5), dpi=100)
    drawn = 0
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for row in leaderboard:
        train, evals = read_curve(row.get("metrics_jsonl"))
        if not train and not evals:
            continue
        colour = colours[drawn % len(colours)]
        label = str(row.get("label") or row.get("job_id"))
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


def plot_metric(leaderboard: list[dict[str, Any]], primary: str, winner_id: str | None, path: Path) -> int:
    """Horizontal bars of the primary metric per job, reference rows in grey. Returns the bar count."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [(r, primary_value(r, primary)) for r in leaderboard]
    rows = [(r, v) for r, v in rows if v is not None]
    height = max(3.0, 0.45 * len(rows) + 1.5)
    fig, ax = plt.subplots(figsize=(9, height), dpi=100)
    if rows:
        labels = [str(r.get("label") or r.get("job_id")) for r, _ in rows]
        values = [v for _, v in rows]
        colours = [STATUS_COLOURS.get(r.get("status"), "#2b7bb9") for r, _ in rows]
        edges = ["#e67e22" if winner_id and r.get("job_id") == winner_id else "none" for r, _ in rows]
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


# -- HTML -------------------------------------------------------------------------------------------

CSS = """
body{font-family:-apple-system,Segoe UI,Helvetica,Arial,sans-serif;margin:24px auto;max-width:1150px;
color:#222;line-height:1.4;padding:0 16px}
h1{margin-bottom:4px}h2{margin-top:32px;border-bottom:1px solid #ddd;padding-bottom:4px}
.muted{color:#666}table{border-collapse:collapse;width:100%;font-size:13px;margin:8px 0}
th,td{border:1px solid #ddd;padding:5px 8px;text-align:left;vertical-align:top}
th{background:#f4f6f8}td.num{text-align:right;font-variant-numeric:tabular-nums}
tr.failed td{background:#fdf0ef}tr.reference td{background:#f6f6f6;color:#555}
tr.winner td{background:#fff6e5;font-weight:600}
.badge{display:inline-block;padding:1px 7px;border-radius:9px;font-size:11px;color:#fff}
.badge.succeeded{background:#2b7bb9}.badge.failed{background:#c0392b}.badge.reference{background:#8c8c8c}
.badge.pass{background:#27ae60}.badge.fail{background:#c0392b}.box{border:1px solid #ddd;border-radius:6px;
padding:12px 16px;margin:8px 0}.box.good{border-color:#27ae60;background:#f1faf4}
.box.bad{border-color:#c0392b;background:#fdf0ef}.error{color:#a93226;white-space:pre-wrap;
font-family:ui-monospace,Menlo,monospace;font-size:12px}
dl{display:grid;grid-template-columns:max-content auto;gap:3px 14px;margin:6px 0}dt{font-weight:600}
dd{margin:0}img{max-width:100%;border:1px solid #eee}code{font-size:12px}
"""


def _dl(pairs: list[tuple[str, Any]]) -> str:
    items = "".join(
        f"<dt>{esc(k)}</dt><dd>{esc(fmt(v))}</dd>" for k, v in pairs if v not in (None, "", [], {})
    )
    return f"<dl>{items}</dl>"


def _summary(experiment: dict[str, Any], primary: str) -> str:
    datasets = ", ".join(
        f"{d.get('name')} ({d.get('uri')})" if d.get("uri") else str(d.get("name"))
        for d in experiment.get("datasets") or []
    )
    models = ", ".join(str(m.get("name")) for m in experiment.get("models") or [])
    hparams = ", ".join(str(h.get("name") or h.get("preset")) for h in experiment.get("hparams") or [])
    training = experiment.get("training") or {}
    scoring = experiment.get("scoring") or {}
    export = experiment.get("export") or {}
    promotion = experiment.get("promotion") or {}
    jobs = len(experiment.get("datasets") or []) * len(experiment.get("models") or [])
    jobs *= len(experiment.get("hparams") or [])
    pairs = [
        ("Description", experiment.get("description")),
        ("Datasets", datasets),
        ("Base models", models),
        ("Hyperparameter groups", hparams),
        ("Matrix", f"{jobs} training jobs" if jobs else None),
        ("Training", " / ".join(str(v) for v in (training.get("type"), training.get("method")) if v)),
        ("Metrics", ", ".join(scoring.get("metrics") or [])),
        ("Primary metric", f"{primary} ({better(primary)})"),
        ("Export", ", ".join(export.get("formats") or []) if export.get("enabled", True) else "disabled"),
        ("Registry", promotion.get("registry_name") or experiment.get("name")),
        ("Promotion margin", promotion.get("margin")),
    ]
    return _dl(pairs)


def _quantized(row: dict[str, Any], metric: str) -> Any:
    return ((row.get("quantized") or {}).get("metrics") or {}).get(metric)


def _leaderboard(rows: list[dict[str, Any]], primary: str, winner_id: str | None) -> str:
    metric_names: list[str] = [primary]
    for row in rows:
        for key in row.get("metrics") or {}:
            if key not in metric_names:
                metric_names.append(key)
    # With scoring.rank_on, each job's export was scored too, and that score ranked the jobs.
    quantized = next((r["quantized"]["format"] for r in rows if r.get("quantized")), None)
    extra = [f"{primary} ({quantized})"] if quantized else []
    head = ["#", "Job", "Status", *metric_names, *extra, "Scored on"]
    head += ["Train loss", "Steps", "Runtime (s)", "Tokens/s", "Error"]
    out = ["<table><thead><tr>", *(f"<th>{esc(h)}</th>" for h in head), "</tr></thead><tbody>"]
    for row in rows:
        status = str(row.get("status") or "succeeded")
        classes = [status] + (["winner"] if winner_id and row.get("job_id") == winner_id else [])
        train = row.get("train") or {}
        metrics = row.get("metrics") or {}
        job = f"<strong>{esc(row.get('label') or row.get('job_id'))}</strong>"
        if row.get("label") and row.get("job_id") and row.get("job_id") != row.get("label"):
            job += f"<br><code class='muted'>{esc(row.get('job_id'))}</code>"
        cells = [
            f"<td class='num'>{esc(fmt(row.get('rank')))}</td>",
            f"<td>{job}</td>",
            f"<td><span class='badge {esc(status)}'>{esc(status)}</span></td>",
            *(f"<td class='num'>{esc(fmt(metrics.get(m)))}</td>" for m in metric_names),
            *(f"<td class='num'>{esc(fmt(_quantized(row, primary)))}</td>" for _ in extra),
            f"<td>{esc(row.get('scored_on') or '')}</td>",
            *(
                f"<td class='num'>{esc(fmt(train.get(k)))}</td>"
                for k in ("train_loss", "steps", "runtime_s", "tokens_per_s")
            ),
            f"<td class='error'>{esc(row.get('error') or '')}</td>",
        ]
        out.append(f"<tr class='{esc(' '.join(classes))}'>{''.join(cells)}</tr>")
    out.append("</tbody></table>")
    failed = [r for r in rows if r.get("status") == "failed"]
    ok = [r for r in rows if r.get("status") == "succeeded"]
    refs = [r for r in rows if r.get("status") == "reference"]
    out.append(
        f"<p class='muted'>{len(ok)} succeeded, {len(failed)} failed, {len(refs)} base-model reference rows. "
        "Failed jobs do not take part in selection.</p>"
    )
    return "".join(out)


def _winner(winner: dict[str, Any] | None, primary: str) -> str:
    if not winner:
        return "<div class='box bad'>No job succeeded: there is no winner to export or promote.</div>"
    metrics = winner.get("metrics") or {}
    model = winner.get("model") or {}
    dataset = winner.get("dataset") or {}
    pairs = [
        ("Job", winner.get("label") or winner.get("job_id")),
        ("Job id", winner.get("job_id")),
        (primary, metrics.get(primary)),
        *((k, v) for k, v in metrics.items() if k != primary),
        ("Base model", model.get("hub_id") or model.get("name") if isinstance(model, dict) else model),
        ("Dataset", f"{dataset.get('name')}@{dataset.get('version')}" if dataset.get("name") else None),
        ("Model", winner.get("model_uri")),
    ]
    return f"<div class='box good'>{_dl(pairs)}</div>"


def _exports(checks: dict[str, Any] | list[Any] | None) -> str:
    rows = export_rows(checks)
    if not rows:
        return "<p class='muted'>No export checks were run.</p>"
    head = ["Format", "Size (MB)", "Latency p50 (ms)", "Latency p95 (ms)", "Metric drop", "Passed", "Notes"]
    out = ["<table><thead><tr>", *(f"<th>{esc(h)}</th>" for h in head), "</tr></thead><tbody>"]
    for row in rows:
        passed = row["passed"]
        badge = (
            f"<span class='badge {'pass' if passed else 'fail'}'>{'passed' if passed else 'failed'}</span>"
            if passed is not None
            else "–"
        )
        notes = [*row["reasons"], *(f"{k}: {fmt(v)}" for k, v in row["details"].items())]
        cells = [
            f"<td><strong>{esc(row['format'])}</strong></td>",
            *(f"<td class='num'>{esc(fmt(row[k]))}</td>" for k in ("size_mb", "p50", "p95", "metric_drop")),
            f"<td>{badge}</td>",
            f"<td>{'<br>'.join(esc(n) for n in notes)}</td>",
        ]
        out.append(f"<tr>{''.join(cells)}</tr>")
    out.append("</tbody></table>")
    if isinstance(checks, dict) and "passed" in checks:
        verdict = "passed" if checks["passed"] else "failed"
        out.append(
            f"<p>Overall: <span class='badge {'pass' if checks['passed'] else 'fail'}'>{verdict}</span></p>"
        )
    return "".join(out)


def _promotion(promotion: dict[str, Any] | None) -> str:
    if not promotion:
        return "<p class='muted'>Promotion was not run.</p>"
    promoted = bool(promotion.get("promoted"))
    title = (
        f"Promoted: version {promotion.get('version')} is production"
        if promoted
        else f"Not promoted (registered as version {promotion.get('version')})"
    )
    pairs = [
        ("Reason", promotion.get("reason")),
        ("Candidate", promotion.get("candidate_metric")),
        ("Champion version", promotion.get("champion_version")),
        ("Champion", promotion.get("champion_metric")),
        ("Like-for-like", promotion.get("like_for_like")),
        ("Champion re-scored in this run", promotion.get("champion_rescored", False)),
        ("Registry", promotion.get("registry_uri")),
    ]
    return f"<div class='box {'good' if promoted else 'bad'}'><strong>{esc(title)}</strong>{_dl(pairs)}</div>"


def _img(path: Path, alt: str) -> str:
    data = base64.b64encode(path.read_bytes()).decode("ascii")
    return f"<img alt='{esc(alt)}' src='data:image/png;base64,{data}'>"


def render(job: dict[str, Any], loss_png: Path, metrics_png: Path) -> str:
    experiment = job.get("experiment") or {}
    primary = job.get("primary") or (experiment.get("scoring") or {}).get("primary") or "rouge_l"
    leaderboard = job.get("leaderboard") or []
    winner = job.get("winner")
    winner_id = (winner or {}).get("job_id")
    name = experiment.get("name") or "experiment"
    generated = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    run = job.get("output", "").rsplit("/report", 1)[0]
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<title>{esc(name)} — tunerflow report</title><style>{CSS}</style></head>
<body>
<h1>Experiment {esc(name)}</h1>
<p class="muted">Run <code>{esc(run)}</code> · generated {esc(generated)}</p>
<h2>Summary</h2>{_summary(experiment, primary)}
<h2>Winner</h2>{_winner(winner, primary)}
<h2>Leaderboard</h2>{_leaderboard(leaderboard, primary, winner_id)}
<h2>Plots</h2>{_img(metrics_png, f"{primary} per job")}{_img(loss_png, "training loss per job")}
<h2>Export checks</h2>{_exports(job.get("export_checks"))}
<h2>Promotion</h2>{_promotion(job.get("promotion"))}
</body></html>
"""


def write_report(job: dict[str, Any]) -> dict[str, Any]:
    """Write index.html, loss.png and metrics.png under job["output"] and commit the manifest."""
    output = job["output"]
    out_dir = store.local_dir(output)
    leaderboard = job.get("leaderboard") or []
    primary = job.get("primary") or ((job.get("experiment") or {}).get("scoring") or {}).get("primary")
    primary = primary or "rouge_l"
    loss_png, metrics_png = out_dir / "loss.png", out_dir / "metrics.png"
    plot_loss(leaderboard, loss_png)
    plot_metric(leaderboard, primary, (job.get("winner") or {}).get("job_id"), metrics_png)
    html_path = out_dir / "index.html"
    tmp = html_path.with_suffix(".html.tmp")
    tmp.write_text(render({**job, "primary": primary}, loss_png, metrics_png), encoding="utf-8")
    tmp.replace(html_path)
    result = {
        "report_uri": store.join(output, "index.html"),
        "plots": [store.join(output, "loss.png"), store.join(output, "metrics.png")],
    }
    store.commit(output, result)
    return result
