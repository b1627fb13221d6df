"""The last light steps of a run: promotion and the report, assembled from what the run committed."""

from __future__ import annotations

from typing import Any

from tasks.config.experiment import load_experiment
from tasks.config.promotion import PromotionConfig
from tasks.contracts.evaluate import EvaluateSpec
from tasks.contracts.export import CheckExportResult, ExportResult
from tasks.contracts.planning import RunInfo
from tasks.contracts.promotion import (
    ApprovalDecision,
    ApprovalRequest,
    PromotionDecision,
    PromotionJob,
    WinnerLineage,
)
from tasks.contracts.selection import Leaderboard, LeaderboardRow, Selection
from tasks.contracts.summary import RunSummary, SummaryWinner
from tasks.pipeline.approval import (
    approval_body,
    read_answers,
    read_approval,
    record_response,
    rejection,
    subject,
)
from tasks.pipeline.report import ReportInputs, write_report
from tasks.pipeline.report_data import approval_text
from tasks.registry import versions as registry
from tasks.registry.champion import champion_score, scoring_failure
from tasks.registry.promotion import decide, lineage, promote
from tasks.storage import layout, store


def _committed(run_uri: str, name: str, model: type[ExportResult] | type[CheckExportResult]) -> Any:
    prefix = store.join(run_uri, name)
    result = store.committed_result(prefix)
    return None if result is None else model.load(result, f"the result committed at {prefix}")


def promotion_job(
    run: RunInfo, winner: LeaderboardRow, conf: dict[str, Any], approved_by: str | None = None
) -> PromotionJob:
    """What the gate is given for the run's winner: its lineage, weights, exports and checks, the champion
    rescored in this run, and who approved (the production pointer's actor)."""
    run_uri = run.run_uri
    promotion = PromotionConfig.model_validate(conf["promotion"])
    # The evaluate spec, which a merged candidate has too (its merge spec is no TrainSpec): the base model
    # and dataset, and the hyperparameters of a trained job (a merge has its parts' instead).
    evaluate_uri = store.join(layout.job(run_uri, winner.job_id), "evaluate.json")
    evaluated = EvaluateSpec.load(store.read_json(evaluate_uri), evaluate_uri)
    merge = {"merged_from": winner.parts, "merge_method": winner.merge_method} if winner.parts else {}
    exported = _committed(run_uri, "export", ExportResult)
    checks = _committed(run_uri, "check_export", CheckExportResult)
    merged = exported.merged_uri if exported else None
    return PromotionJob(
        store_root=run.store_root,
        registry_name=promotion.registry_name or conf["name"],
        run_uri=run_uri,
        winner=WinnerLineage(
            job_id=winner.job_id,
            label=winner.label,
            metrics=winner.metrics,
            model=evaluated.model.model_dump(mode="json"),
            dataset=evaluated.dataset.model_dump(mode="json"),
            hparams=evaluated.hparams.model_dump(mode="json") if evaluated.hparams else {},
            **merge,
        ),
        primary=conf["scoring"]["primary"],
        margin=promotion.margin,
        # The merged model when the export made one; else the fine-tuned weights as trained.
        model_uri=merged or winner.train.model_uri,
        adapter_uri=None if merged else winner.train.adapter_uri,
        champion_score=champion_score(run_uri),
        exports={fmt: info.uri for fmt, info in exported.formats.items()} if exported else {},
        checks_passed=bool(checks and checks.passed) if conf["export"]["enabled"] else True,
        approved_by=approved_by,
    )


def preview_gate(job: PromotionJob) -> tuple[PromotionDecision, bool]:
    """The gate's decision as `promote` would take it now, registering nothing: (the decision, whether the
    production pointer would move)."""
    root, name = job.store_root, job.registry_name
    existing = registry.find_versions(root, name, run_uri=job.run_uri, job_id=job.winner.job_id)
    candidate = existing[0] if existing else {**lineage(job), "version": None}
    rescored = job.champion_score.model_dump(mode="json") if job.champion_score else None
    verdict = decide(
        candidate, registry.production(root, name), job.primary, job.margin, job.checks_passed, rescored
    )
    move = verdict.pop("move")
    return PromotionDecision.model_validate({**verdict, "primary": job.primary}), move


def approval_request(run: RunInfo) -> ApprovalRequest:
    """What `approve_promotion` asks, or why it skips: approval not required, promotion disabled, or the
    gate would not move production anyway (nothing for a person to approve)."""
    conf = load_experiment(run.run_uri)
    promotion = PromotionConfig.model_validate(conf["promotion"])
    if not promotion.enabled:
        return ApprovalRequest(skip="promotion.enabled is false")
    if not promotion.require_approval:
        return ApprovalRequest(skip="promotion.require_approval is false: the gate decides alone")
    recorded = read_approval(run.run_uri)
    if recorded is not None:
        # Decided once per run, like every committed output: a retry (Airflow can fail a task resumed
        # within seconds of parking, apache/airflow#72716) or a clear does not ask again.
        return ApprovalRequest(answered=approval_text(recorded))
    board = read_leaderboard(run.run_uri)
    if board is None or board.winner is None:
        return ApprovalRequest(skip="no winner to approve")
    gate, move = preview_gate(promotion_job(run, board.winner, conf))
    if not move:
        return ApprovalRequest(skip=f"nothing to approve, production would not move: {gate.reason}")
    return ApprovalRequest(
        subject=subject(conf["name"], board.winner.label),
        body=approval_body(board, gate, promotion.margin, read_answers(run.run_uri, board.winner)),
        timeout_hours=promotion.approval_timeout_hours,
    )


def record_approval(run: RunInfo, response: dict[str, Any]) -> ApprovalDecision:
    """Record the provider's resume event (an answer or the timeout's default) as `approval.json`."""
    promotion = PromotionConfig.model_validate(load_experiment(run.run_uri)["promotion"])
    return record_response(run.run_uri, response, promotion.approval_timeout_hours)


def _unapproved(
    run: RunInfo, selection: Selection, conf: dict[str, Any], approval: ApprovalDecision | None
) -> PromotionDecision | None:
    """With promotion.require_approval, the decision when nobody approved: the rejection or timeout
    recorded, or (no answer: approve_promotion skipped) a gate that would now move production after all,
    as when another run moved the pointer meanwhile. None when promote may go ahead."""
    promotion = PromotionConfig.model_validate(conf["promotion"])
    if approval is not None:
        return None if approval.approved else rejection(approval, promotion.approval_timeout_hours)
    gate, move = preview_gate(promotion_job(run, selection.winner, conf))
    if not move:
        return None
    return PromotionDecision(
        promoted=False,
        reason=f"not promoted: promotion.require_approval is set and nobody approved ({gate.reason})",
    )


def promote_winner(run: RunInfo, selection: Selection) -> PromotionDecision:
    """Register the selected winner with its lineage and let the gate decide; `promotion.json` records it.
    With promotion.require_approval, production moves only after an approval (`approval.json`), and the
    pointer records the approver as its actor."""
    run_uri = run.run_uri
    conf = load_experiment(run_uri)
    promotion = PromotionConfig.model_validate(conf["promotion"])
    approval = read_approval(run_uri) if promotion.require_approval else None
    if not promotion.enabled:
        decision = PromotionDecision(promoted=False, reason="promotion.enabled is false")
    elif promotion.require_approval and (refused := _unapproved(run, selection, conf, approval)):
        decision = refused
    else:
        job = promotion_job(run, selection.winner, conf, approval.decided_by if approval else None)
        decided = promote(job)
        if approval:
            decided["approval"] = approval.model_dump(mode="json")
        decision = PromotionDecision.model_validate(decided)
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
        if promotion.approval:
            lines.append(f"Approval:        {approval_text(promotion.approval)}")
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
