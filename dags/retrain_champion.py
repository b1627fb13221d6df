"""
### retrain_champion

Retrains the registry's **current champion** on a schedule, when upstream data changes, or on demand.
Each run starts one `finetune_experiment` run whose base model is the production version, and waits
for it: that experiment's own champion gate (the champion rescored on the new rows,
`promotion.margin`) decides whether the retrained model replaces it. A promotion emits the
`tunerflow://registry/production` Asset event that deployment DAGs schedule on.

`build_conf -> train_challenger (finetune_experiment run retrain__<run id>) -> outcome`

* Settings: `include/configs/retraining.yaml` or `$TUNERFLOW_RETRAIN_CONFIG` (registry, cron schedule,
  trigger asset URIs, the experiment template). See docs/retraining.md.
* An asset event's extra may carry new data: `{"dataset_uri": ..., "dataset_name": ...}` or
  `{"datasets": [...]}`. The Params below do the same for a manual run.
* No champion yet: `build_conf` is skipped, saying to run `finetune_experiment` first.
"""

from __future__ import annotations

from datetime import datetime

from airflow.sdk import Param, dag, get_current_context, task

from tasks.pipeline.operators import TriggerDagRunWhenRun
from tasks.registry.retraining_settings import FINETUNE_DAG_ID, build_schedule, load_settings
from tasks.storage.store import default_root

SETTINGS = load_settings()


@dag(
    dag_id="retrain_champion",
    schedule=build_schedule(SETTINGS),
    start_date=datetime(2026, 1, 1),
    catchup=False,
    # Two retrains of one champion at once would race each other's promotion and waste the GPUs.
    max_active_runs=1,
    doc_md=__doc__,
    tags=["tunerflow", "llm", "retraining"],
    params={
        "dataset_uri": Param(
            None,
            type=["null", "string"],
            description="New rows for this retrain (a path, file://, s3:// or builtin: URI): replaces "
            "the uri of `dataset_name`. Empty: the template's datasets, or an asset event's extra.",
        ),
        "dataset_name": Param(
            None,
            type=["null", "string"],
            description="Which dataset of the retraining template `dataset_uri` replaces; needed only "
            "when the template has more than one.",
        ),
    },
)
def retrain_champion():
    @task
    def build_conf() -> dict:
        from airflow.sdk.exceptions import AirflowFailException, AirflowSkipException

        from tasks.config.base import ConfError
        from tasks.registry.retraining_conf import (
            NoChampion,
            RetrainingError,
            asset_event_dicts,
            build_retrain_conf,
        )

        context = get_current_context()
        events = asset_event_dicts(context.get("triggering_asset_events"))
        for event in events:
            print(f"ASSET EVENT {event['uri']} at {event['timestamp']}: {event['extra']}")
        try:
            conf = build_retrain_conf(load_settings(), default_root(), events, context["params"])
        except NoChampion as nothing:
            raise AirflowSkipException(str(nothing)) from None
        except (RetrainingError, ConfError) as error:
            raise AirflowFailException(str(error)) from None
        print(f"RETRAIN {conf['name']} from {conf['models'][0]['uri']}: {conf['description']}")
        return conf

    conf = build_conf()
    # The finetune run's own id, so the store path and the retry are predictable. No retries: a retry
    # would find the run already there (HTTP 409) instead of waiting for it.
    challenger = TriggerDagRunWhenRun(
        task_id="train_challenger",
        trigger_dag_id=FINETUNE_DAG_ID,
        trigger_run_id="retrain__{{ run_id }}",
        conf=conf,
        wait_for_completion=True,
        poke_interval=SETTINGS.poll_interval_s,
        fail_when_dag_is_paused=True,
        retries=0,
    )

    @task
    def outcome(conf: dict) -> dict:
        from tasks.registry.retraining_conf import retrain_outcome

        ti = get_current_context()["ti"]
        run_id = ti.xcom_pull(task_ids="train_challenger", key="trigger_run_id")
        result = retrain_outcome(default_root(), conf, run_id)
        verdict = "PROMOTED" if result["promoted"] else "champion stays"
        print(f"{verdict}: {result['reason']}")
        return result

    challenger >> outcome(conf)


dag = retrain_champion()
