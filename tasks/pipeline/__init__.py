"""The light Airflow-side logic of a run: validating the conf and planning jobs, the skip rules,
selection, orchestration of promotion and the report.

Light: DAG tasks import it, heavy modules never at import time. May import `tasks.config`,
`tasks.contracts`, `tasks.storage`, `tasks.runtime`, `tasks.data`, `tasks.scoring`, `tasks.registry` and
`tasks.search`.
"""
