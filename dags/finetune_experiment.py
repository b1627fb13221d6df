"""
### finetune_experiment

One run = one experiment: every **dataset x base model x hyperparameter group** becomes one mapped
training job; every job is scored the same way; the best is exported to ONNX (FP32 and INT8),
checked, promoted to the registry if it beats the champion, and written up in an HTML report.

`validate_conf -> prepare_dataset[ds] -> plan_jobs -> train[job] -> evaluate[job]`
`-> round_2 .. round_6 (plan -> train[job] -> evaluate[job]) -> plan_merges -> merge[m] -> score_merge[m]`
`(+ score_base[ds|model]) -> select_best -> export -> check_export`
`(+ plan_champion -> score_champion) -> approve_promotion -> promote -> report -> track_mlflow`

* Trigger from the form below, or `POST /api/v2/dags/finetune_experiment/dagRuns` with `{"conf": {...}}`.
* **Run the demo**: choose `demo` in *Start from* and trigger; nothing to type. Every field left empty
  takes the demo's value.
* **Your own experiment**: rename it, pick datasets (built-in and registered), base models (the
  catalog) and hyperparameter presets; one job per dataset x model x preset. Training, scoring, export
  and promotion are optional: empty means the defaults, shown in each field's help. Anything a choice
  cannot say (your own data path, a preset with changed values) goes in the conf JSON, which takes the
  full conf; a choice is only a shorter way to write the same fields (`tasks/config/form.py`).
* **Search** (`search` in the conf): random or TPE trials sampled by Optuna, or a grid over a space,
  and successive halving. Each later round is a task group `round_<k>`: it plans the next trials (or
  continues halving's survivors from their checkpoints), trains them and scores its final jobs; a
  round with nothing to do skips. Without a search the groups `round_2`.. skip.
* **Merged candidates** (`merge.enabled`): after the last round, the best jobs of each base model are
  merged (`plan_merges -> merge -> score_merge`) and ranked as one more row.
* With `promotion.require_approval`, `approve_promotion` waits for a person to approve or reject the
  winner (the Required Actions page, or `PATCH .../taskInstances/approve_promotion/-1/hitlDetails`);
  Reject, or no answer within `approval_timeout_hours`, leaves production unchanged.
* A failed job never sinks the experiment: selection runs on the jobs that succeeded and lists the
  others with their reasons.
* With an Airflow connection `tunerflow_mlflow` (docs/mlflow.md), `track_mlflow` records the run in MLflow:
  a run per experiment run, a nested run per job, the registry version and its `production` alias.
  Without one it skips; when the server is down it fails (and retries) without failing the run.
* Heavy steps run as `python -m tasks.<step> --job <spec uri>`: in a subprocess (`local`, default) or
  in a GPU pod (`TUNERFLOW_BACKEND=kubernetes`).
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from airflow.sdk import Asset, TaskGroup, dag, get_current_context, task
from airflow.sdk.exceptions import AirflowFailException

from tasks.backends import backend_name
from tasks.backends.heavy import heavy_tasks, run_of, skip_when
from tasks.config.experiment import load_experiment
from tasks.config.params import airflow_params, param_specs
from tasks.config.search import MAX_ROUNDS
from tasks.pipeline import skips
from tasks.pipeline.operators import ApprovalWhenRun
from tasks.registry.promotion_event import PRODUCTION_ASSET_NAME, PRODUCTION_ASSET_URI, promotion_event_extra
from tasks.storage.store import default_root

if TYPE_CHECKING:
    from tasks.contracts.base import Contract
    from tasks.contracts.planning import RunInfo
    from tasks.contracts.prepare import PreparedDataset

BACKEND = backend_name()
# Updated by every promotion; deployment DAGs schedule on it and read the registry, version and model
# from the event's extra. One fixed URI for every registry: an outlet cannot depend on the run's conf.
PRODUCTION_MODEL = Asset(name=PRODUCTION_ASSET_NAME, uri=PRODUCTION_ASSET_URI, group="model")


def _this_run() -> RunInfo:
    return run_of(get_current_context())


def _xcom(contracts: list[Contract]) -> list[dict]:
    """A list of contracts as XCom carries it: plain JSON."""
    return [contract.model_dump(mode="json") for contract in contracts]


def _prepared(datasets: list[dict]) -> list[PreparedDataset]:
    # The contracts load when a task runs: building their models is not a parse-time need.
    from tasks.contracts.prepare import PreparedDataset

    return [PreparedDataset.model_validate(dataset) for dataset in datasets]


def _approval_request(context: dict) -> Any:
    # Loaded when the task runs, as every step library the task bodies use.
    from tasks.pipeline.orchestration import approval_request

    return approval_request(run_of(context))


def _record_approval(context: dict, response: dict) -> None:
    # Loaded when the task runs, as every step library the task bodies use.
    from tasks.pipeline.orchestration import record_approval

    record_approval(run_of(context), response)


@dag(
    dag_id="finetune_experiment",
    schedule=None,
    start_date=datetime(2026, 1, 1),
    catchup=False,
    max_active_runs=4,
    doc_md=__doc__,
    tags=["tunerflow", "llm", "fine-tuning"],
    params=airflow_params(param_specs()),
)
def finetune_experiment():
    # Planning (numpy), selection, promotion and the report load in the task that runs them, not on
    # every parse of this file.
    @task
    def validate_conf() -> list[dict]:
        from tasks.config.allowed_paths import server_roots
        from tasks.pipeline.plan import validate_conf as validate

        context = get_current_context()
        root = default_root()
        # A conf from the form or REST reads only what the deployment allows (TUNERFLOW_ALLOWED_PATHS).
        conf, run_id = dict(context["params"]), context["run_id"]
        return _xcom(validate(conf, run_id=run_id, store_root=root, allowed_roots=server_roots(root)))

    @task
    def plan_jobs(datasets: list[dict]) -> list[dict]:
        from tasks.pipeline.plan import plan_jobs as plan

        return _xcom(plan(_this_run(), _prepared(datasets)))

    # all_done: a round starts once the previous round's jobs ended, however they ended. It skips (and
    # its tasks with it) when the run has no search or planned nothing; it plans nothing (and its mapped
    # tasks skip) once the search is finished.
    @task(trigger_rule="all_done")
    def plan(round_number: int) -> list[dict]:
        from tasks.pipeline.plan import plan_round

        run = _this_run()
        skip_when(skips.nothing_planned(run.run_uri) or skips.no_search(run.run_uri))
        return _xcom(plan_round(run, round_number))

    # The jobs a round scores: only its final ones (a halving rung that decides who continues is not).
    @task
    def final_jobs(round_number: int) -> list[dict]:
        from tasks.pipeline.plan import final_jobs as finals

        return _xcom(finals(_this_run().run_uri, round_number))

    @task
    def plan_references(datasets: list[dict]) -> list[dict]:
        from tasks.pipeline.plan import plan_references as plan

        return _xcom(plan(_this_run(), _prepared(datasets)))

    # all_done: after the last round however its jobs ended; it plans nothing unless `merge.enabled`, and
    # nothing for a base model with fewer than two jobs that succeeded.
    @task(trigger_rule="all_done")
    def plan_merges() -> list[dict]:
        from tasks.pipeline.merges import plan_merges as plan
        from tasks.pipeline.plan import planned
        from tasks.pipeline.selection import ranking

        run = _this_run()
        skip_when(skips.nothing_planned(run.run_uri))
        jobs, scoring = planned(run.run_uri), load_experiment(run.run_uri)["scoring"]
        board = ranking(run.run_uri, jobs, scoring["primary"], scoring.get("rank_on", "pytorch"))
        return _xcom(plan(run, jobs, board))

    # all_done: failed or skipped jobs never block selection. A run whose conf or data failed planned
    # nothing, and selection skips itself (all_done_min_one_success would skip on any skipped job).
    @task(trigger_rule="all_done")
    def select_best() -> dict:
        from tasks.pipeline.plan import planned
        from tasks.pipeline.selection import export_specs, leaderboard

        run = _this_run()
        skip_when(skips.nothing_planned(run.run_uri))
        scoring = load_experiment(run.run_uri)["scoring"]
        board = leaderboard(
            run.run_uri, planned(run.run_uri), scoring["primary"], scoring.get("rank_on", "pytorch")
        )
        for failure in board.failed:
            print(f"FAILED {failure.label}: {failure.error}")
        if board.winner is None:
            raise AirflowFailException("no job succeeded; see leaderboard.json for every job's reason")
        print(f"WINNER {board.winner.label}: {board.winner.metrics}")
        return export_specs(run.run_uri, run.store_root, board.winner).model_dump(mode="json")

    @task
    def plan_champion(selection: dict) -> list[str]:
        # Loaded when the task runs, as every contract and step library the task bodies use.
        from tasks.contracts.selection import Selection
        from tasks.registry.champion import plan_champion_scoring

        run = _this_run()
        winner = Selection.model_validate(selection).winner
        plan = plan_champion_scoring(run, load_experiment(run.run_uri), winner)
        skip_when(plan.skip)
        return plan.argv

    # Runs after an approval, or when approve_promotion skipped itself; never after a rejection.
    @task(trigger_rule="none_failed_min_one_success")
    def promote(selection: dict) -> dict:
        # Loaded when the task runs, as every contract and step library the task bodies use.
        from tasks.contracts.selection import Selection
        from tasks.lineage.emit import report_promotion
        from tasks.pipeline.orchestration import promote_winner

        run = _this_run()
        decision = promote_winner(run, Selection.model_validate(selection)).model_dump(mode="json")
        report_promotion(run.store_root, decision)  # OpenLineage: model -> registry version, production
        return decision

    # Skipped (so no Asset event) unless promote moved the production pointer. A second leaf beside
    # report: when the event cannot be emitted the run fails, since deployments never hear of the model.
    @task(outlets=[PRODUCTION_MODEL])
    def publish_promotion(decision: dict) -> dict:
        # The contract loads when the task runs: building its model is not a parse-time need.
        from tasks.contracts.promotion import PromotionDecision

        run = _this_run()
        promotion = PromotionDecision.model_validate(decision)
        extra = promotion_event_extra(run, promotion)
        if extra is None:
            skip_when(f"not promoted, no event: {promotion.reason}")
        get_current_context()["outlet_events"][PRODUCTION_MODEL].extra = extra
        weights = extra["model_uri"] or extra["adapter_uri"]
        print(f"PRODUCTION {extra['registry']} v{extra['version']}: {weights}")
        return extra

    # The leaf task, so its state is the run's: it writes what there is to report, then fails the run
    # when the experiment shipped nothing (refused conf, no winner, failed export check).
    @task(trigger_rule="all_done")
    def report() -> dict:
        from tasks.pipeline.orchestration import run_problem, write_run_report

        run = _this_run()
        summary = {}
        nothing = skips.nothing_to_report(run.run_uri)
        if nothing:
            print(nothing)
        else:
            written, text = write_run_report(run)
            print(text)
            summary = written.model_dump(mode="json")
        problem = run_problem(run.run_uri)
        if problem:
            raise AirflowFailException(f"the experiment shipped nothing: {problem}")
        return summary

    # A teardown: it runs once report and publish_promotion ended, however they ended (so failed jobs
    # are recorded too), and Airflow leaves it out of the run's state: a tracking server that is down
    # fails this task (retried, then red) but never the run, whose training and promotion are committed.
    @task(retries=2, retry_delay=timedelta(seconds=30), retry_exponential_backoff=True)
    def track_mlflow() -> dict:
        # Loaded when the task runs: the tracking package imports mlflow (heavy) when it records.
        from tasks.storage.connections import airflow_connection
        from tasks.tracking import connection, track

        context, run = get_current_context(), _this_run()
        conn_id = connection.conn_id()
        value = airflow_connection(conn_id)
        skip_when(skips.not_tracked(run.run_uri, value, conn_id))
        try:
            target = connection.target(conn_id, value)
            tracked = track.track(run, target, {"dag_id": context["dag"].dag_id, "run_id": context["run_id"]})
        except track.TrackingUnavailable:
            raise  # retried: the server may be back by the next try
        except connection.TrackingError as error:
            raise AirflowFailException(str(error)) from None
        print(track.describe(tracked))
        return track.as_xcom(tracked)

    # The graph is the same on both backends; the backend decides only how a heavy step runs.
    heavy = heavy_tasks(BACKEND)
    datasets = heavy.prepare_dataset(validate_conf())
    jobs = plan_jobs(datasets)
    references = plan_references(datasets)
    trained = heavy.train(jobs)
    finals = final_jobs(1)
    jobs >> finals
    scored = heavy.evaluate(finals)
    trained >> scored
    ended = [trained, scored]
    for round_number in range(2, MAX_ROUNDS + 1):
        with TaskGroup(f"round_{round_number}"):
            planned = plan(round_number)
            round_trained = heavy.train(planned)
            round_finals = final_jobs(round_number)
            planned >> round_finals
            round_scored = heavy.evaluate(round_finals)
            round_trained >> round_scored
        ended >> planned
        ended = [round_trained, round_scored]
    based = heavy.score_base(references)
    merges = plan_merges()
    ended >> merges
    merged = heavy.merge(merges)
    merged_scored = heavy.score_merge(merges)
    merged >> merged_scored
    selection = select_best()
    exported = heavy.export(selection["export_argv"])
    checked = heavy.check_export(selection["check_export_argv"])
    champion = heavy.score_champion(plan_champion(selection))
    [merged, merged_scored, based] >> selection
    exported >> checked
    # Runs after a passed check, or with export disabled (export and its check skipped), and after the
    # champion was scored on the candidate's rows, or when there is no champion (skipped). It skips itself
    # unless promotion.require_approval asks a person; on Reject or a timeout it skips promote. Declared
    # here, in graph order: the demo's live view lists tasks in the order the DAG declares them.
    approval = ApprovalWhenRun(
        task_id="approve_promotion",
        request=_approval_request,
        on_response=_record_approval,
        trigger_rule="none_failed_min_one_success",
        # Not for a person's answer (recorded once per run, never asked twice once recorded): for Airflow
        # failing a task resumed within seconds of asking (apache/airflow#72716), as a bot's REST answer is.
        retries=2,
        retry_delay=timedelta(seconds=10),
    )
    promoted = promote(selection)
    [checked, champion, selection] >> approval >> promoted
    reported = report()
    [selection, promoted] >> reported
    published = publish_promotion(promoted)
    [reported, published] >> track_mlflow().as_teardown()


dag = finetune_experiment()
