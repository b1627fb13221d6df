"""The heavy tasks of `finetune_experiment`, declared once for both backends.

The DAGs wire their graphs; `heavy_tasks(backend)` gives them one method per heavy task (`prepare_dataset`,
`train`, `evaluate`, `merge`, `score_merge`, `score_base`, `export`, `check_export`, `score_champion` of
finetune_experiment, and `compare_models` of the DAG of that name), each with its task id, the step it
runs, what it maps over, its trigger rule, retries and skip rule. The backend decides only
how the step runs: a local @task running `python -m tasks.<step> --job <spec uri>` in a subprocess on the
worker (`LocalSteps`, tasks.backends.local), or a `StepPodOperator` mapped over the same argv
(`tasks.backends.kubernetes.PodSteps`).

Light: the DAG processor imports it on every parse. The kubernetes backend's modules load only when that
backend is chosen; what a local task needs only while it runs loads then.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from airflow.sdk import get_current_context, task
from airflow.sdk.exceptions import AirflowFailException, AirflowSkipException

from tasks.backends import TRAIN_RETRIES
from tasks.backends.local import StepFailed, run_step
from tasks.config.experiment import load_run_record
from tasks.pipeline import skips
from tasks.storage import masking
from tasks.storage.s3 import store_env
from tasks.storage.store import default_root

if TYPE_CHECKING:
    from airflow.sdk.definitions.xcom_arg import XComArg

    from tasks.backends.kubernetes import PodSteps
    from tasks.contracts.planning import RunInfo

# Steps that score, so may call the llm_judge: a local subprocess gets the judge's connection from the
# worker (pods get it from a Secret in env_from_secrets).
SCORING_STEPS = ("evaluate", "check_export")
COMPARE_STEP = "compare_models"


# --- what the mapped tasks map over: module-level functions, so XComArg.map serializes them ------------
# Each is given one entry of a light task's XCom list (plain JSON) and reads it through its contract.


# The contracts are imported where a task runs: building their pydantic models is not a parse-time need.


def dataset_argv(dataset: dict[str, Any]) -> list[str]:
    from tasks.contracts.prepare import PlannedDataset  # at run time (see above)

    return PlannedDataset.model_validate(dataset).argv


def train_argv(job: dict[str, Any]) -> list[str]:
    from tasks.contracts.planning import PlannedJob  # at run time (see above)

    return PlannedJob.model_validate(job).train_argv


def evaluate_argv(job: dict[str, Any]) -> list[str]:
    from tasks.contracts.planning import PlannedJob  # at run time (see above)

    return PlannedJob.model_validate(job).evaluate_argv


def entry_label(step: str, entry: dict[str, Any]) -> str:
    """A mapped local task's readable map index: the dataset's name, or the job's label
    (`tuna|smollm2-135m-instruct|lr1e-3`)."""
    from tasks.contracts.planning import PlannedJob  # at run time (see above)
    from tasks.contracts.prepare import PlannedDataset

    if step == "prepare_dataset":
        return PlannedDataset.model_validate(entry).name
    return PlannedJob.model_validate(entry).label


def endpoint_env(spec_uri: str) -> dict[str, str]:
    """{AIRFLOW_CONN_<ID>: the connection} of every endpoint a compare spec names, resolved by Airflow
    (any secrets backend; the password masked in the task log), for the step subprocess's environment
    only. A missing or unusable connection fails the task before any model loads."""
    from tasks.contracts.compare import CompareSpec  # at run time (see above)
    from tasks.scoring.judge_connection import JudgeError, endpoint, how_to_create
    from tasks.storage import connections, store

    spec = CompareSpec.load(store.read_json(spec_uri), spec_uri)
    env = {}
    for conn_id in spec.connections:
        value = connections.airflow_connection(conn_id)
        if value is None:
            raise AirflowFailException(
                f"the Airflow connection '{conn_id}' of a compared endpoint is not defined; "
                f"{how_to_create(conn_id)}"
            )
        try:
            endpoint(conn_id, value)
        except JudgeError as error:
            raise AirflowFailException(str(error)) from None
        env[connections.env_var(conn_id)] = value
    return env


# --- the run a task belongs to, and skipping ----------------------------------------------------------


def run_of(context: Any) -> RunInfo:
    """The run of the task whose context this is: derived from its Params and run id, so every task
    agrees (tasks.pipeline.plan.run_info)."""
    # tasks.pipeline.plan imports numpy (token counts); this module is loaded while the DAG is parsed.
    from tasks.pipeline.plan import run_info

    return run_info(context["params"]["name"], context["run_id"], default_root())


def skip_when(reason: str | None) -> None:
    """Skip the running task when a rule of tasks.pipeline.skips gave a reason."""
    if reason:
        raise AirflowSkipException(reason)


@dataclass(frozen=True)
class SkipRule:
    """When a heavy task skips, given the step's argv and the task's context. Called with the context
    alone it is a pod's `pre_execute` hook, the argv being the pod's (rendered) arguments."""

    reason: Callable[[list[str], Any], str | None]

    def check(self, argv: list[str], context: Any) -> None:
        skip_when(self.reason(argv, context))

    def __call__(self, context: Any) -> None:
        self.check(context["task"].arguments, context)


# The argv's last word is the step's spec URI.
skip_if_training_failed = SkipRule(lambda argv, context: skips.training_failed(argv[-1]))
skip_unless_export_enabled = SkipRule(lambda argv, context: skips.export_disabled(run_of(context).run_uri))


# --- the local backend: a subprocess on the worker ----------------------------------------------------


def run_locally(step: str, argv: list[str], context: Any, skip: SkipRule | None) -> dict[str, Any]:
    """The body of a local heavy task: skip, or run the step in a subprocess and return its result. A
    failure on the step's inputs fails the task for good; an interrupted step (preempted, killed) is
    left to the task's retries. A step that ran reports what it read and wrote to OpenLineage, when the
    provider is on (tasks.lineage.emit)."""
    if skip:
        skip.check(argv, context)
    # Connections (the store's aws_default, the judge's) reach the step through its environment only:
    # never a spec, XCom or log.
    env = store_env(default_root())
    # The step inherits the worker's environment, credentials included (HF_TOKEN for gated models, the
    # AWS_* keys): whatever it prints reaches this task's log, so the masker must know them.
    masking.mask_environment()
    if step in SCORING_STEPS:
        # Loaded where the step runs: the judge is not a parse-time need.
        from tasks.scoring.judge import judge_env

        env.update(judge_env(load_run_record(run_of(context).run_uri)["experiment"]["scoring"]))
    if step == "train":
        # GRPO may reward with llm_judge (tasks.training.grpo_reward): its train step calls the judge.
        from tasks.scoring.judge import reward_judge_env

        env.update(reward_judge_env(load_run_record(run_of(context).run_uri)))
    if step == COMPARE_STEP:
        env.update(endpoint_env(argv[-1]))
    try:
        result = run_step(argv, env)
    except StepFailed as failure:
        if failure.retryable:  # preempted or killed: the retry resumes from the last checkpoint
            raise
        raise AirflowFailException(str(failure)) from None
    # Loaded once a step ran: the task's OpenLineage datasets (nothing unless OpenLineage is on).
    from tasks.lineage.emit import report_step

    report_step(step, argv, result)
    return result


class LocalSteps:
    """Heavy tasks as @tasks that run the step in a subprocess on the worker (tasks.backends.local)."""

    def mapped(
        self,
        task_id: str,
        step: str,
        entries: XComArg,
        argv: Callable[[dict[str, Any]], list[str]],
        skip: SkipRule | None = None,
        **task_kwargs: Any,
    ):
        """One task per entry of `entries` (a light task's list), running the argv `argv` picks from it."""
        label = "dataset_name" if step == "prepare_dataset" else "job_label"

        @task(task_id=task_id, map_index_template="{{ " + label + " }}", **task_kwargs)
        def run(entry: dict[str, Any]) -> dict[str, Any]:
            context = get_current_context()
            context[label] = entry_label(step, entry)
            return run_locally(step, argv(entry), context, skip)

        return run.expand(entry=entries)

    def single(
        self, task_id: str, step: str, argv: XComArg, skip: SkipRule | None = None, **task_kwargs: Any
    ):
        @task(task_id=task_id, **task_kwargs)
        def run(argv: list[str]) -> dict[str, Any]:
            return run_locally(step, argv, get_current_context(), skip)

        return run(argv)


# --- the graph's heavy tasks ---------------------------------------------------------------------------


class HeavyTasks:
    """The heavy tasks of a run, each given the light task's output it runs on (an XComArg)."""

    def __init__(self, steps: LocalSteps | PodSteps) -> None:
        self.steps = steps

    def prepare_dataset(self, datasets: XComArg):
        """One per prepare spec `validate_conf` returns (the eval set included)."""
        return self.steps.mapped("prepare_dataset", "prepare_dataset", datasets, dataset_argv)

    def train(self, jobs: XComArg):
        return self.steps.mapped("train", "train", jobs, train_argv, **TRAIN_RETRIES)

    def evaluate(self, jobs: XComArg):
        # all_done: a failed training still reaches its evaluate, which skips itself with the reason.
        return self.steps.mapped(
            "evaluate", "evaluate", jobs, evaluate_argv, skip=skip_if_training_failed, trigger_rule="all_done"
        )

    def merge(self, merges: XComArg):
        """One per merged candidate `plan_merges` returns: the merge step "trains" the candidate."""
        return self.steps.mapped("merge", "merge", merges, train_argv, **TRAIN_RETRIES)

    def score_merge(self, merges: XComArg):
        # all_done, as evaluate: a failed merge reaches its scoring, which skips itself with the reason.
        return self.steps.mapped(
            "score_merge",
            "evaluate",
            merges,
            evaluate_argv,
            skip=skip_if_training_failed,
            trigger_rule="all_done",
        )

    def score_base(self, references: XComArg):
        return self.steps.mapped("score_base", "evaluate", references, evaluate_argv)

    def export(self, argv: XComArg):
        return self.steps.single("export", "export", argv, skip=skip_unless_export_enabled)

    def check_export(self, argv: XComArg):
        return self.steps.single("check_export", "check_export", argv)

    def score_champion(self, argv: XComArg):
        return self.steps.single("score_champion", "evaluate", argv)

    def compare_models(self, argv: XComArg):
        """compare_models' one heavy task: every model, one after another, in one process."""
        return self.steps.single(COMPARE_STEP, COMPARE_STEP, argv)


def heavy_tasks(backend: str) -> HeavyTasks:
    """The heavy tasks for `backend` (tasks.backends.backend_name)."""
    if backend == "kubernetes":
        # Settings file, pydantic models and operator: only a kubernetes deployment parses them.
        from tasks.backends.kubernetes import PodSteps
        from tasks.backends.kubernetes_settings import load_settings

        return HeavyTasks(PodSteps(load_settings()))
    return HeavyTasks(LocalSteps())
