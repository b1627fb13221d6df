"""The model registry: versions with lineage, the production pointer (compare-and-swap), promotion,
champion scoring and retraining.

Light (the Airflow worker imports it). May import `tasks.config`, `tasks.contracts`,
`tasks.storage`, `tasks.runtime` and `tasks.scoring.plugins` (which way a metric points).
"""
