"""The last light steps of a run: promotion and the report, assembled from what the run committed."""

from __future__ import annotations

from typing import Any

from tasks.config.experiment import load_experiment
from tasks.config.promotion import PromotionConfig
from tasks.contracts.export import CheckExportResult, ExportResult
from tasks.contracts.planning import RunInfo
from tasks.contracts.promotion import PromotionDecision, PromotionJob, WinnerLineage
from tasks.contracts.selection import Leaderboard, Selection
from tasks.contracts.summary import RunSummary, SummaryWinner
from tasks.contracts.train import TrainSpec
from tasks.pipeline.report import ReportInputs, write_report
from tasks.registry.champion import champion_score, scoring_failure
from tasks.registry.promotion import promote
from tasks.storage import layout, store


def _committed(run_uri: str, name: str, model: type[ExportResult] | type[CheckExportResult]) -> Any:
    prefix = store.join(run_uri, name)
    result = store.committed_result(prefix)
    return None if result is None else model.load(result, f"the result committed at {prefix}")


def promote_winner(run: RunInfo, selection: Selection) -> PromotionDecision:
    """Register the selected winner with its lineage and let the gate decide; `promotion.json` records it."""
    run_uri = run.run_uri
    conf = load_experiment(run_uri)
    promotion = PromotionConfig.model_validate(conf["promotion"])
    if not promotion.enabled:
        disabled = PromotionDecision(promoted=False, reason="promotion.enabled is false")
        store.write_json(store.join(run_uri, "promotion.json"), disabled.model_dump(mode="json"))
        return disabled
    winner = selection.winner
    train_uri = store.join(layout.job(run_uri, winner.job_id), "train.json")
    train_spec = TrainSpec.load(store.read_json(train_uri), train_uri)
    exported = _committed(run_uri, "export", ExportResult)
    checks = _committed(run_uri, "check_export", CheckExportResult)
    export_enabled = conf["export"]["enabled"]
    merged = exported.merged_uri if exported else None
    job = PromotionJob(
        store_root=run.store_root,
        registry_name=promotion.registry_name or conf["name"],
        run_uri=run_uri,
        winner=WinnerLineage(
            job_id=winner.job_id,
            label=winner.label,
            metrics=winner.metrics,
            model=train_spec.model.model_dump(mode="json"),
            dataset=train_spec.dataset.model_dump(mode="json"),
            hparams=train_spec.hparams.model_dump(mode="json"),
        ),
        primary=conf["scoring"]["primary"],
        margin=promotion.margin,
        # The merged model when the export made one; else the fine-tuned weights as trained.
        model_uri=merged or winner.train.model_uri,
        adapter_uri=None if merged else winner.train.adapter_uri,
        champion_score=champion_score(run_uri),
        exports={fmt: info.uri for fmt, info in exported.formats.items()} if exported else {},
        checks_passed=bool(checks and checks.passed) if export_enabled else True,
    )
    decision = PromotionDecision.model_validate(promote(job))
    store.write_json(store.join(run_uri, "promotion.json"), decision.model_dump(mode="json"))
    return decision


def format_leaderboard(board: Leaderboard) -> str:
    primary = board.primary
    lines = [f"{'rank':>4}  {'job':<45} {'status':<10} {primary:>10}  other metrics"]
    for row in board.rows:
        value = row.metrics.get(primary)
        others = ", ".join(f"{k}={v:.4f}" for k, v in row.metrics.items() if k != primary)
        if row.quantized and primary in row.quantized.metrics:
            quantized = row.quantized
            others = f"{primary} as {quantized.format}={quantized.metrics[primary]:.4f}, {others}"
        shown = f"{value:.4f}" if value is not None else "-"
        rank = row.rank if row.rank is not None else "-"
        lines.append(f"{rank!s:>4}  {row.label:<45} {row.status:<10} {shown:>10}  {others}")
        if row.error:
            lines.append(f"{'':>6}reason: {row.error}")
    return "\n".join(lines)


def format_summary(summary: RunSummary, board: Leaderboard) -> str:
    """The run's outcome for a terminal or a task log: leaderboard, winner, promotion, where things are."""
    lines = [f"Leaderboard ({board.primary}, higher is better unless a loss):", format_leaderboard(board)]
    if summary.winner:
        lines.append(f"\nWinner:          {summary.winner.label}  {summary.winner.metrics}")
    promotion = summary.promotion
    if promotion:
        verdict = "PROMOTED" if promotion.promoted else "not promoted"
        lines.append(f"Promotion:       {verdict} ({promotion.reason})")
        if promotion.registry_uri:
            lines.append(f"Registry:        {promotion.registry_uri} version {promotion.version}")
    if summary.merged_model_uri:
        lines.append(f"Promoted model:  {summary.merged_model_uri}")
    for fmt, uri in summary.exports.items():
        lines.append(f"Export {fmt + ':':<10} {uri}")
    if summary.report_uri:
        lines.append(f"Report:          {summary.report_uri}")
    return "\n".join(lines)


def read_leaderboard(run_uri: str) -> Leaderboard | None:
    """The run's `leaderboard.json`, or None before selection wrote it."""
    uri = store.join(run_uri, "leaderboard.json")
    return Leaderboard.load(store.read_json(uri), uri) if store.exists(uri) else None


def write_run_report(run: RunInfo) -> tuple[RunSummary, str]:
    """Write the HTML report and summary.json; return the summary and a printable text version."""

    run_uri = run.run_uri
    experiment = load_experiment(run_uri)
    board = read_leaderboard(run_uri) or Leaderboard(primary=experiment["scoring"]["primary"])
    promotion_uri = store.join(run_uri, "promotion.json")
    promotion = (
        PromotionDecision.load(store.read_json(promotion_uri), promotion_uri)
        if store.exists(promotion_uri)
        else None
    )
    exported = _committed(run_uri, "export", ExportResult)
    report = write_report(
        ReportInputs(
            output=store.join(run_uri, "report"),
            experiment=experiment,
            board=board,
            checks=_committed(run_uri, "check_export", CheckExportResult),
            promotion=promotion,
        )
    )
    winner = board.winner
    summary = RunSummary(
        run_uri=run_uri,
        report_uri=report["report_uri"],
        winner=SummaryWinner(label=winner.label, metrics=winner.metrics) if winner else None,
        failed=board.failed,
        exports={fmt: info.uri for fmt, info in exported.formats.items()} if exported else {},
        merged_model_uri=exported.merged_uri if exported else None,
        promotion=promotion,
    )
    store.write_json(store.join(run_uri, "summary.json"), summary.model_dump(mode="json"))
    return summary, format_summary(summary, board)


def run_problem(run_uri: str) -> str | None:
    """Why this run shipped nothing, or None. Airflow sets a run's state from its leaf task (`report`),
    so this is what makes a REST client polling the state see `failed`. One failed job is not a
    problem while another job won."""

    if not store.exists(store.join(run_uri, "experiment.json")):
        return "the conf was refused by validate_conf; its log names every bad field"
    board = read_leaderboard(run_uri)
    if board is None:
        return "nothing was scored: a dataset failed to prepare or planning failed; see prepare_dataset"
    if board.winner is None:
        reasons = "; ".join(f"{f.label}: {f.error}" for f in board.failed[:3])
        return f"no job succeeded ({reasons})"
    experiment = load_experiment(run_uri)
    checks = _committed(run_uri, "check_export", CheckExportResult)
    if experiment["export"]["enabled"] and not (checks and checks.passed):
        for step in ("check_export", "export"):
            error_uri = store.join(run_uri, step, "error.json")
            if store.exists(error_uri):
                return f"{step} failed: {store.read_json(error_uri)['message']}"
        return "the winner's export did not pass its checks"
    if experiment["promotion"]["enabled"] and not store.exists(store.join(run_uri, "promotion.json")):
        failure = scoring_failure(run_uri)
        if failure:
            return f"promotion did not run: scoring the champion failed: {failure}"
        return "promotion did not run; see the promote task's log"
    return None
