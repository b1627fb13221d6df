"""MLflow tracking, optional per deployment: the run, a nested run per job, and registry versions mirrored.

An Airflow connection (`tunerflow_mlflow`, or the id in `TUNERFLOW_MLFLOW_CONN_ID`) names the tracking
server (`connection`); without it nothing is tracked. `collect` reads what a finished run left in the
store (the leaderboard, each job's spec, training curves and scores, the report, the dataset cards, the
promotion) into plain models; `runs` writes them as MLflow runs found again by their tags, so a retry
adds nothing twice; `model_registry` mirrors the registry version the run registered (and the
production alias); `track` puts it together for the `track_mlflow` task.

Light at import (the Airflow worker imports it): `mlflow` is imported inside the functions that call it.
May import `tasks.storage`, `tasks.contracts`, `tasks.config`, `tasks.registry` and `tasks.runtime`.
"""
