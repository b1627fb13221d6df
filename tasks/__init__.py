"""tunerflow's step logic, one package per concern (docs/architecture.md has the map).

The top level holds only the five heavy steps, each `python -m tasks.<step> --job <spec uri>`, the same
command in a local subprocess and in a pod: `prepare_dataset`, `train`, `evaluate`, `export`,
`check_export`. The packages, from the bottom of the import graph up:

- `runtime`: what every step process shares (errors, the job-spec protocol, torchrun relaunch)
- `storage`: the artifact store behind one interface (file://, s3://), keys, connections
- `config`: the experiment conf's pydantic models, the model catalog, the trigger form's Params
- `contracts`: the typed job specs and results the steps exchange
- `data`: sources, formats, checks, splitting and the dataset registry
- `training`: base models, trainers per training type and method, checkpoints
- `scoring`: metrics, scoring plugins, generation, the LLM judge
- `exporting`: merge, ONNX, INT8 and calibration, export checks
- `registry`: model versions, the production pointer, promotion, champion, retraining
- `pipeline`: the light Airflow-side planning, skip rules, selection and report
- `backends`: where heavy steps run (local subprocess or Kubernetes pod)
- `cli`: the `tunerflow` command
"""
