"""Experiment configuration: the pydantic models of a conf (one module per area), the model catalog,
and the trigger form's Params generated from them.

- `base`: the strict base model, the slug type, `ConfError` and how validation errors read.
- `dataset`, `models`, `training`, `scoring`, `export`, `promotion`: one conf section each.
- `hparam_fields`: every hyperparameter declared once; `hparams` derives from it the conf's and the
  train step's models, the defaults, the trainer arguments and the README table.
- `parallel`: where a group can train (GPU-only settings, several nodes), judged at validation.
- `experiment`: the whole conf (`ExperimentConfig`, `parse_experiment`).
- `paths`: where include/configs/ and include/data/ are; `catalog`: the model catalog and the presets.
- `allowed_paths`: which local paths a conf may read (`TUNERFLOW_ALLOWED_PATHS`).
- `params`: the trigger form's Params; `form`: its choices (the demo, datasets, models, presets), written
  out into the conf by `parse_experiment`.

Light: imported when a DAG is parsed and by every step; never torch, transformers or boto3 at import
time. May import `tasks.storage` (a run's recorded conf) and the stdlib-only registries of what a conf
may name: `tasks.data.plugins`, `tasks.data.formats` and `tasks.scoring.plugins`; `tasks.data.rows`, the
stdlib-only row model, for the default row size limit; and the dataset registry,
`tasks.data.dataset_registry`, whose registered datasets the trigger form offers.
"""
