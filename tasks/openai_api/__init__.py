"""The OpenAI-compatible fine-tuning API's logic, without Airflow: OpenAI's objects (files, jobs, events,
checkpoints, errors) as pydantic models, the checks an uploaded JSONL file passes and its place in the
store and the dataset registry, a job request turned into a validated `finetune_experiment` conf, and a
job's state, events and checkpoints read from its DAG run (given as plain data) and the store.

`plugins/tunerflow_ui/routes/openai_api.py` serves it under `/tunerflow/v1` and talks to Airflow's
REST API; everything here is a plain function tested on a store written with the project's writers.

Light: the api-server imports it, heavy modules never. May import `tasks.config`, `tasks.contracts`,
`tasks.storage`, `tasks.data`, `tasks.registry`, `tasks.pipeline` and `tasks.console`.
"""
