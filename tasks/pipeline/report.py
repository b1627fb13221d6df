"""The experiment report: one self-contained HTML page plus two plots, committed under `<run>/report`.

Written from `ReportInputs`: the experiment conf as recorded, the `Leaderboard` (rows, winner, primary
metric), the `CheckExportResult` and the `PromotionDecision` (either may be missing; with approval
required, the decision carries who approved or rejected, and when). The committed
result is {"report_uri": ".../index.html", "plots": [".../loss.png", ".../metrics.png"]}.

A format's checks are read leniently (`report_data.export_rows`): a check may hold size_bytes | size_mb,
latency | latency_ms {"p50_ms" | "p50", "p95_ms" | "p95"} | latency_p50_ms / latency_p95_ms, metric_drop,
passed, problems | reasons | reason; other scalars are listed as notes.

The data comes from `tasks.pipeline.report_data`, the plots from `tasks.pipeline.report_plots`; this module
renders the page (every text escaped) and commits it.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass
from datetime import UTC, datetime
from html import escape
from pathlib import Path
from typing import Any

from tasks.contracts.export import CheckExportResult
from tasks.contracts.promotion import PromotionDecision
from tasks.contracts.selection import Leaderboard, LeaderboardRow
from tasks.pipeline.report_data import approval_text, better, export_rows, fmt
from tasks.pipeline.report_plots import plot_loss, plot_metric
from tasks.storage import store


@dataclass(frozen=True)
class ReportInputs:
    """What the page is written from; `output` is the report's prefix, `<run>/report`."""

    output: str
    experiment: dict[str, Any]
    board: Leaderboard
    checks: CheckExportResult | None = None
    promotion: PromotionDecision | None = None


def esc(value: Any) -> str:
    return escape("" if value is None else str(value), quote=True)


CSS = """
body{font-family:-apple-system,Segoe UI,Helvetica,Arial,sans-serif;margin:24px auto;max-width:1150px;
color:#222;line-height:1.4;padding:0 16px}
h1{margin-bottom:4px}h2{margin-top:32px;border-bottom:1px solid #ddd;padding-bottom:4px}
.muted{color:#666}table{border-collapse:collapse;width:100%;font-size:13px;margin:8px 0}
th,td{border:1px solid #ddd;padding:5px 8px;text-align:left;vertical-align:top}
th{background:#f4f6f8}td.num{text-align:right;font-variant-numeric:tabular-nums}
tr.failed td{background:#fdf0ef}tr.reference td{background:#f6f6f6;color:#555}
tr.pruned td{color:#777;font-style:italic}
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


def _quantized(row: LeaderboardRow, metric: str) -> Any:
    return row.quantized.metrics.get(metric) if row.quantized else None


def _note(row: LeaderboardRow) -> str:
    """Why a row stands where it does: its error, where training stopped early, or a merge's parts."""
    stopped = row.stopped or (row.train.stopped if row.train else None)
    notes = [row.error, stopped and (f"{stopped} (round {row.round})" if row.round else stopped)]
    if row.parts:
        notes.append(f"merged ({row.merge_method}) from {', '.join(row.parts)}")
    return "; ".join(note for note in notes if note)


def _leaderboard(board: Leaderboard, primary: str, winner_id: str | None) -> str:
    rows = board.rows
    metric_names: list[str] = [primary]
    for row in rows:
        for key in row.metrics:
            if key not in metric_names:
                metric_names.append(key)
    # With scoring.rank_on, each job's export was scored too, and that score ranked the jobs.
    quantized = next((r.quantized.format for r in rows if r.quantized), None)
    extra = [f"{primary} ({quantized})"] if quantized else []
    spend = ["Device-hours"] if board.device_hours is not None else []
    spend += [f"Cost ({board.currency})"] if board.cost is not None else []
    head = ["#", "Job", "Status", *metric_names, *extra, "Scored on"]
    head += ["Train loss", "Steps", "Runtime (s)", "Tokens/s", *spend, "Notes"]
    out = ["<table><thead><tr>", *(f"<th>{esc(h)}</th>" for h in head), "</tr></thead><tbody>"]
    for row in rows:
        classes = [row.status] + (["winner"] if winner_id and row.job_id == winner_id else [])
        job = f"<strong>{esc(row.label or row.job_id)}</strong>"
        if row.label and row.job_id != row.label:
            job += f"<br><code class='muted'>{esc(row.job_id)}</code>"
        cells = [
            f"<td class='num'>{esc(fmt(row.rank))}</td>",
            f"<td>{job}</td>",
            f"<td><span class='badge {esc(row.status)}'>{esc(row.status)}</span></td>",
            *(f"<td class='num'>{esc(fmt(row.metrics.get(m)))}</td>" for m in metric_names),
            *(f"<td class='num'>{esc(fmt(_quantized(row, primary)))}</td>" for _ in extra),
            f"<td>{esc(row.scored_on or '')}</td>",
            *(
                f"<td class='num'>{esc(fmt(getattr(row.train, k) if row.train else None))}</td>"
                for k in ("train_loss", "steps", "runtime_s", "tokens_per_s")
            ),
            *(f"<td class='num'>{esc(fmt(row.device_hours))}</td>" for _ in spend[:1]),
            *(f"<td class='num'>{esc(fmt(row.cost))}</td>" for _ in spend[1:]),
            f"<td class='{'error' if row.error else 'muted'}'>{esc(_note(row))}</td>",
        ]
        out.append(f"<tr class='{esc(' '.join(classes))}'>{''.join(cells)}</tr>")
    out.append("</tbody></table>")
    count = {status: sum(r.status == status for r in rows) for status in ("succeeded", "failed", "pruned")}
    refs = sum(r.status == "reference" for r in rows)
    pruned = f", {count['pruned']} pruned by successive halving" if count["pruned"] else ""
    out.append(
        f"<p class='muted'>{count['succeeded']} succeeded, {count['failed']} failed{pruned}, {refs} "
        "base-model reference rows. Failed and pruned jobs do not take part in selection.</p>"
    )
    if board.search:
        out.append(f"<p class='muted'>Search: {esc(board.search)}</p>")
    if board.device_hours is not None:
        cost = f", {fmt(board.cost)} {board.currency}" if board.cost is not None else ""
        out.append(
            f"<p class='muted'>Training used {esc(fmt(board.device_hours))} device-hours{esc(cost)}.</p>"
        )
    return "".join(out)


def _winner(winner: LeaderboardRow | None, primary: str) -> str:
    if not winner:
        return "<div class='box bad'>No job succeeded: there is no winner to export or promote.</div>"
    pairs = [
        ("Job", winner.label or winner.job_id),
        ("Job id", winner.job_id),
        (primary, winner.metrics.get(primary)),
        *((k, v) for k, v in winner.metrics.items() if k != primary),
    ]
    return f"<div class='box good'>{_dl(pairs)}</div>"


def _exports(checks: CheckExportResult | None) -> str:
    rows = export_rows(checks.model_dump(mode="json") if checks else None)
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
    verdict = "passed" if checks.passed else "failed"
    out.append(f"<p>Overall: <span class='badge {'pass' if checks.passed else 'fail'}'>{verdict}</span></p>")
    return "".join(out)


def _promotion(promotion: PromotionDecision | None) -> str:
    if not promotion:
        return "<p class='muted'>Promotion was not run.</p>"
    if promotion.promoted:
        title = f"Promoted: version {promotion.version} is production"
    elif promotion.version is not None:
        title = f"Not promoted (registered as version {promotion.version})"
    else:
        title = "Not promoted"
    approval = promotion.approval
    pairs = [
        ("Reason", promotion.reason),
        # With promotion.require_approval: who decided what and when (the timeout is a decision too).
        ("Approval", approval_text(approval) if approval else None),
        ("Options chosen", ", ".join(approval.chosen_options) if approval else None),
        ("Candidate", promotion.candidate_metric),
        ("Champion version", promotion.champion_version),
        ("Champion", promotion.champion_metric),
        ("Like-for-like", promotion.like_for_like),
        # Recorded only when it happened: its absence says it did not.
        ("Champion re-scored in this run", bool(promotion.champion_rescored)),
        ("Registry", promotion.registry_uri),
    ]
    box = "good" if promotion.promoted else "bad"
    return f"<div class='box {box}'><strong>{esc(title)}</strong>{_dl(pairs)}</div>"


def _img(path: Path, alt: str) -> str:
    data = base64.b64encode(path.read_bytes()).decode("ascii")
    return f"<img alt='{esc(alt)}' src='data:image/png;base64,{data}'>"


def _winner_id(board: Leaderboard) -> str | None:
    return board.winner.job_id if board.winner else None


def render(report: ReportInputs, loss_png: Path, metrics_png: Path) -> str:
    experiment, board = report.experiment, report.board
    primary = board.primary
    name = experiment.get("name") or "experiment"
    generated = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    run = report.output.rsplit("/report", 1)[0]
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<title>{esc(name)} — tunerflow report</title><style>{CSS}</style></head>
<body>
<h1>Experiment {esc(name)}</h1>
<p class="muted">Run <code>{esc(run)}</code> · generated {esc(generated)}</p>
<h2>Summary</h2>{_summary(experiment, primary)}
<h2>Winner</h2>{_winner(board.winner, primary)}
<h2>Leaderboard</h2>{_leaderboard(board, primary, _winner_id(board))}
<h2>Plots</h2>{_img(metrics_png, f"{primary} per job")}{_img(loss_png, "training loss per job")}
<h2>Export checks</h2>{_exports(report.checks)}
<h2>Promotion</h2>{_promotion(report.promotion)}
</body></html>
"""


def write_report(report: ReportInputs) -> dict[str, Any]:
    """Write index.html, loss.png and metrics.png under `report.output` and commit the manifest."""
    output, board = report.output, report.board
    out_dir = store.local_dir(output)
    loss_png, metrics_png = out_dir / "loss.png", out_dir / "metrics.png"
    plot_loss(board.rows, loss_png)
    plot_metric(board.rows, board.primary, _winner_id(board), metrics_png)
    html_path = out_dir / "index.html"
    tmp = html_path.with_suffix(".html.tmp")
    tmp.write_text(render(report, loss_png, metrics_png), encoding="utf-8")
    tmp.replace(html_path)
    result = {
        "report_uri": store.join(output, "index.html"),
        "plots": [store.join(output, "loss.png"), store.join(output, "metrics.png")],
    }
    store.commit(output, result)
    return result
