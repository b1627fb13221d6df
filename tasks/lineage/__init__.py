"""OpenLineage lineage of a run: what each step read and wrote, as OpenLineage datasets with facets.

`naming` turns a store URI (or a dataset source, a base model) into an OpenLineage namespace and name, so
two runs reading the same prepared version name the same dataset; `facets` declares tunerflow's own
dataset facets; `steps` builds each step's inputs and outputs from its spec and committed result
(prepare_dataset, train and merge, evaluate, export, check_export) and `promotion` the promote task's;
`emit` hands them to the Airflow OpenLineage provider (`emit_dataset_lineage`), doing nothing when the
provider is not installed or OpenLineage is disabled. See docs/lineage.md.

The `openlineage` client is an optional extra (`tunerflow[openlineage]`): it is imported inside functions
only (`facets` is itself loaded only from inside functions), never while a DAG is parsed. May import
`tasks.config`, `tasks.contracts`, `tasks.storage` and `tasks.registry`.
"""
