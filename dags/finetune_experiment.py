"""
### finetune_experiment

One run = one experiment: every **dataset x base model x hyperparameter group** becomes one mapped
training job; every job is scored the same way; the best is exported to ONNX (FP32 and INT8),
checked, promoted to the registry if it beats the champion, and written up in an HTML report.

`validate_conf -> prepare_dataset[ds] -> plan_jobs -> train[job] -> evaluate[job]`
`(+ score_base[ds|model]) -> select_best -> export -> check_export`
`(+ plan_champion -> score_champion) -> promote -> report`

* Trigger from the form below, or `POST /api/v2/dags/finetune_experiment/dagRuns` with `{"conf": {...}}`.
* A failed job never sinks the experiment: selection runs on the jobs that succeeded and lists the
  others with their reasons.
* Heavy steps run as `python -m tasks.<step> --job <spec uri>`: in a subprocess (`local`, default) or
  in a GPU pod (`TUNERFLOW_BACKEND=kubernetes`).
"""

from __future__ import annotations

from datetime import datetime

from airflow.sdk import Asset, Param, dag, get_current_context, task

from tasks.backends import TRAIN_RETRIES, backend_name
from tasks.config.params import NO_DEFAULT, param_specs
from tasks.registry.retraining import PRODUCTION_ASSET_NAME, PRODUCTION_ASSET_URI
from tasks.storage.store import default_root

BACKEND = backend_name()
# Updated by every promotion; deployment DAGs schedule on it and read the registry, version and model
# from the event's extra. One fixed URI for every registry: an outlet cannot depend on the run's conf.
PRODUCTION_MODEL = Asset(name=PRODUCTION_ASSET_NAME, uri=PRODUCTION_ASSET_URI, group="model")


def _label(key: str, value: str) -> None:
    """Expose a readable name to `map_index_template` (e.g. `tuna|smollm2-135m-instruct|lr1e-3`)."""
    get_current_context()[key] = value


def _run(argv: list[str], env: dict | None = None) -> dict:
    from tasks.backends.local import run_step
    from tasks.storage.s3 import store_env

    # The store's S3 connection (aws_default) for every heavy step: env only, never logged or returned.
    return run_step(argv, {**store_env(default_root()), **(env or {})})


def _scoring_env() -> dict:
    """The judge's Airflow connection, for steps that score (empty unless llm_judge is a metric)."""
    from tasks.pipeline.plan import load_experiment
    from tasks.scoring.judge import judge_env

    return judge_env(load_experiment(_this_run()["run_uri"])["scoring"])


def _this_run() -> dict:
    from tasks.pipeline.plan import run_info

    context = get_current_context()
    return run_info(context["params"]["name"], context["run_id"], default_root())


@dag(
    dag_id="finetune_experiment",
    schedule=None,
    start_date=datetime(2026, 1, 1),
    catchup=False,
    max_active_runs=4,
    doc_md=__doc__,
    tags=["tunerflow", "llm", "fine-tuning"],
    params={
        name: Param(**schema) if default is NO_DEFAULT else Param(default, **schema)
        for name, (default, schema) in param_specs().items()
    },
)
def finetune_experiment():
    @task
    def validate_conf() -> list[dict]:
        from tasks.pipeline.plan import validate_conf as validate

        context = get_current_context()
        return validate(dict(context["params"]), run_id=context["run_id"], store_root=default_root())

    @task(map_index_template="{{ dataset_name }}")
    def prepare_dataset(dataset: dict) -> dict:
        _label("dataset_name", dataset["name"])
        return _run(dataset["argv"])

    @task
    def plan_jobs(datasets: list[dict]) -> list[dict]:
        from tasks.pipeline.plan import plan_jobs as plan

        return plan(_this_run(), list(datasets))

    @task
    def plan_references(datasets: list[dict]) -> list[dict]:
        from tasks.pipeline.plan import plan_references as plan

        return plan(_this_run(), list(datasets))

    @task(map_index_template="{{ job_label }}", **TRAIN_RETRIES)
    def train(job: dict) -> dict:
        from airflow.sdk.exceptions import AirflowFailException

        from tasks.backends.local import StepFailed

        _label("job_label", job["label"])
        try:
            return _run(job["train_argv"])
        except StepFailed as failure:
            if failure.retryable:  # preempted or killed: the retry resumes from the last checkpoint
                raise
            raise AirflowFailException(str(failure)) from None

    @task(map_index_template="{{ job_label }}", trigger_rule="all_done")
    def evaluate(job: dict) -> dict:
        from airflow.sdk.exceptions import AirflowSkipException

        from tasks.storage import store

        _label("job_label", job["label"])
        spec = store.read_json(job["evaluate_spec"])
        if not store.is_committed(spec["train_output"]):
            raise AirflowSkipException(f"{job['label']}: training failed, nothing to score")
        return _run(job["evaluate_argv"], _scoring_env())

    @task(map_index_template="{{ job_label }}")
    def score_base(job: dict) -> dict:
        _label("job_label", job["label"])
        return _run(job["evaluate_argv"], _scoring_env())

    # all_done: failed or skipped jobs never block selection. A run whose conf or data failed planned
    # nothing, and selection skips itself (all_done_min_one_success would skip on any skipped job).
    @task(trigger_rule="all_done")
    def select_best() -> dict:
        from airflow.sdk.exceptions import AirflowFailException, AirflowSkipException

        from tasks.pipeline.plan import load_experiment, planned
        from tasks.pipeline.selection import export_specs, leaderboard
        from tasks.storage import store

        run = _this_run()
        if not store.exists(store.join(run["run_uri"], "jobs.json")):
            raise AirflowSkipException("nothing was planned: validate_conf or prepare_dataset failed")
        scoring = load_experiment(run["run_uri"])["scoring"]
        board = leaderboard(
            run["run_uri"], planned(run["run_uri"]), scoring["primary"], scoring.get("rank_on", "pytorch")
        )
        for failure in board["failed"]:
            print(f"FAILED {failure['label']}: {failure['error']}")
        if board["winner"] is None:
            raise AirflowFailException("no job succeeded; see leaderboard.json for every job's reason")
        winner = board["winner"]
        print(f"WINNER {winner['label']}: {winner['metrics']}")
        return {"winner": winner, **export_specs(run["run_uri"], run["store_root"], winner)}

    @task
    def export(selection: dict) -> dict:
        from airflow.sdk.exceptions import AirflowSkipException

        from tasks.pipeline.plan import load_experiment

        if not load_experiment(_this_run()["run_uri"])["export"]["enabled"]:
            raise AirflowSkipException("export.enabled is false")
        return _run(selection["export_argv"])

    @task
    def check_export(selection: dict) -> dict:
        return _run(selection["check_export_argv"], _scoring_env())

    @task
    def plan_champion(selection: dict) -> list[str]:
        from airflow.sdk.exceptions import AirflowSkipException

        from tasks.pipeline.plan import load_experiment
        from tasks.registry.champion import plan_champion_scoring

        run = _this_run()
        planned = plan_champion_scoring(run, load_experiment(run["run_uri"]), selection["winner"])
        if "skip" in planned:
            raise AirflowSkipException(planned["skip"])
        return planned["argv"]

    @task
    def score_champion(argv: list[str]) -> dict:
        return _run(argv, _scoring_env())

    # Runs after a passed check, or with export disabled (export and its check skipped), and after the
    # champion was scored on the candidate's rows, or when there is no champion (skipped).
    @task(trigger_rule="none_failed_min_one_success")
    def promote(selection: dict) -> dict:
        from tasks.pipeline.orchestration import promote_winner

        return promote_winner(_this_run(), selection)

    # Skipped (so no Asset event) unless promote moved the production pointer. A second leaf beside
    # report: when the event cannot be emitted the run fails, since deployments never hear of the model.
    @task(outlets=[PRODUCTION_MODEL])
    def publish_promotion(decision: dict) -> dict:
        from airflow.sdk.exceptions import AirflowSkipException

        from tasks.registry.retraining import promotion_event_extra

        extra = promotion_event_extra(_this_run(), decision)
        if extra is None:
            raise AirflowSkipException(f"not promoted, no event: {decision.get('reason')}")
        get_current_context()["outlet_events"][PRODUCTION_MODEL].extra = extra
        weights = extra["model_uri"] or extra["adapter_uri"]
        print(f"PRODUCTION {extra['registry']} v{extra['version']}: {weights}")
        return extra

    # The leaf task, so its state is the run's: it writes what there is to report, then fails the run
    # when the experiment shipped nothing (refused conf, no winner, failed export check).
    @task(trigger_rule="all_done")
    def report() -> dict:
        from airflow.sdk.exceptions import AirflowFailException

        from tasks.pipeline.orchestration import run_problem, write_run_report
        from tasks.storage import store

        run = _this_run()
        summary = {}
        if store.exists(store.join(run["run_uri"], "leaderboard.json")):
            summary = write_run_report(run)
            print(summary.pop("text"))
        problem = run_problem(run["run_uri"])
        if problem:
            raise AirflowFailException(f"the experiment shipped nothing: {problem}")
        return summary

    if BACKEND == "kubernetes":
        # The same heavy steps as pods (KubernetesPodOperator): same task ids, mapped over the argv lists
        # the light tasks return. Settings: include/configs/kubernetes.yaml or $TUNERFLOW_K8S_CONFIG.
        from tasks.backends import kubernetes as pods
        from tasks.backends.kubernetes_settings import load_settings

        pod = load_settings()
        datasets = pods.mapped_step(
            "prepare_dataset", "prepare_dataset", validate_conf().map(pods.dataset_argv), pod
        ).output
        jobs = plan_jobs(datasets)
        references = plan_references(datasets)
        trained = pods.mapped_step("train", "train", jobs.map(pods.train_argv), pod, **TRAIN_RETRIES)
        scored = pods.mapped_step(
            "evaluate",
            "evaluate",
            jobs.map(pods.evaluate_argv),
            pod,
            trigger_rule="all_done",
            pre_execute=pods.skip_if_training_failed,
        )
        based = pods.mapped_step("score_base", "evaluate", references.map(pods.evaluate_argv), pod)
        selection = select_best()
        exported = pods.single_step(
            "export", "export", selection["export_argv"], pod, pre_execute=pods.skip_unless_export_enabled
        )
        checked = pods.single_step("check_export", "check_export", selection["check_export_argv"], pod)
        champion = pods.single_step("score_champion", "evaluate", plan_champion(selection), pod)
    else:
        datasets = prepare_dataset.expand(dataset=validate_conf())
        jobs = plan_jobs(datasets)
        references = plan_references(datasets)
        trained = train.expand(job=jobs)
        scored = evaluate.expand(job=jobs)
        based = score_base.expand(job=references)
        selection = select_best()
        exported = export(selection)
        checked = check_export(selection)
        champion = score_champion(plan_champion(selection))
    trained >> scored
    [scored, based] >> selection
    exported >> checked
    promoted = promote(selection)
    [checked, champion] >> promoted
    [selection, promoted] >> report()
    publish_promotion(promoted)


dag = finetune_experiment()
