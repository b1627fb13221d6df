"""
### compare_models

Ask two to four models the same questions and see their answers side by side, with prompt and
completion tokens, time to first token, tokens/s and latency for every answer.

`plan_compare -> compare_models`

* A model is a registry version (`{"registry": "tuna", "version": "production"}`, with
  `"format": "onnx-int8"` for its INT8 export), an experiment's job (`{"experiment", "run", "job"}`), a
  catalog model (`{"catalog": "smollm2-135m-instruct"}`), a Hugging Face directory (`{"path": ...}`), an
  exported ONNX directory (`{"onnx": ...}`) or an OpenAI-compatible endpoint behind an Airflow connection
  (`{"connection": "my_llm", "model": "gpt-4o-mini"}`); any of them may add `label` and `temperature`.
* Questions are typed in (`prompts`) or taken from an eval set (`{"dataset", "version", "limit"}` or
  `{"experiment", "run", "limit"}`).
* Trigger from the form below, from tunerflow's Compare page, or `POST /api/v2/dags/compare_models/dagRuns`.
  Results: `compare/<run id>/results/results.json` in the store, and the Compare page.
* The models run one after another in one heavy step (`python -m tasks.compare_models --job <spec uri>`):
  a subprocess (`local`, default) or a pod (`TUNERFLOW_BACKEND=kubernetes`).
"""

from __future__ import annotations

from datetime import datetime

from airflow.sdk import dag, get_current_context, task
from airflow.sdk.exceptions import AirflowFailException

from tasks.backends import backend_name
from tasks.backends.heavy import heavy_tasks
from tasks.compare.config import param_specs
from tasks.config.params import airflow_params
from tasks.storage.store import default_root

BACKEND = backend_name()


@dag(
    dag_id="compare_models",
    schedule=None,
    start_date=datetime(2026, 1, 1),
    catchup=False,
    max_active_runs=4,
    doc_md=__doc__,
    tags=["tunerflow", "llm", "compare"],
    params=airflow_params(param_specs()),
)
def compare_models():
    @task
    def plan_compare() -> list[str]:
        # Resolving the models reads the registry and the runs: a task's work, not a parse's.
        from tasks.compare.plan import plan_compare as plan
        from tasks.compare.plan import record_refusal, step_argv
        from tasks.config.allowed_paths import server_roots
        from tasks.config.base import ConfError

        context = get_current_context()
        root = default_root()
        try:
            # Model paths from the form or REST must lie where the deployment allows.
            spec = plan(dict(context["params"]), context["run_id"], root, allowed_roots=server_roots(root))
        except ConfError as error:
            record_refusal(root, context["run_id"], str(error))
            raise AirflowFailException(f"the conf was refused:\n{error}") from None
        for model in spec.models:
            print(f"MODEL {model.label}: {model.source}")
        return step_argv(root, context["run_id"])

    heavy_tasks(BACKEND).compare_models(plan_compare())


dag = compare_models()
