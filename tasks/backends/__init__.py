"""Where heavy steps run: `local` (a subprocess on the Airflow worker, the default) or `kubernetes`
(one pod per step). Chosen per deployment with TUNERFLOW_BACKEND, read when the DAG is parsed.

`heavy` declares the DAGs' heavy tasks once, the experiment's steps and `compare_models` (task ids,
what they map over, trigger rules, retries, skip rules) and builds them for the chosen backend; `local`
runs a step in a subprocess; `kubernetes` is the pod operator and `kubernetes_settings` its settings
file; `trainjob` (the manifest and the API calls), `trainjob_task` (submit, then the result) and
`trainjob_trigger` (the wait in the triggerer) run a training over several nodes as a Kubeflow Trainer
TrainJob.

The Airflow side of the steps; nothing under `tasks/` imports it but the DAGs. May import
`tasks.config`, `tasks.contracts`, `tasks.storage`, `tasks.runtime`, `tasks.pipeline`, `tasks.registry`,
`tasks.scoring` and `tasks.lineage` (a step's OpenLineage datasets). Light when the DAG is parsed: the
kubernetes provider and clients load only when a pod runs, the kubernetes modules only for that backend.
"""

from __future__ import annotations

import os
from datetime import timedelta

BACKENDS = ("local", "kubernetes")
# A preempted or killed training resumes from its newest committed checkpoint, so retrying it loses at
# most one save interval; the same on both backends.
TRAIN_RETRIES = {"retries": 2, "retry_delay": timedelta(seconds=30)}


def backend_name() -> str:
    name = os.environ.get("TUNERFLOW_BACKEND", "local").strip().lower()
    if name not in BACKENDS:
        raise ValueError(f"TUNERFLOW_BACKEND='{name}' is not one of {BACKENDS}")
    return name
