"""The search of an experiment: which trials it trains (the hyperparameter groups as given, a grid over
a search space, or trials sampled by Optuna), the study's state kept in the run's store prefix
(`search/study.json`, `search/round-<k>.json`), successive halving (who continues, who is pruned) and
the device-hour budget.

Decisions on plain data plus the study's files; the planning tasks (`tasks.pipeline.plan`) turn them
into job specs. Light: the Airflow worker imports it, Optuna loads inside the function that samples.
May import `tasks.config`, `tasks.contracts` and `tasks.storage`.
"""
