"""The light Airflow-side logic of a run: validating the conf and planning jobs, the skip rules,
selection, orchestration of promotion and the report.

Light: DAG tasks import it. May import every package but `tasks.cli` and `tasks.backends`; heavy modules
never at import time.
"""
