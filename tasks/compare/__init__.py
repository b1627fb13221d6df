"""Comparing models side by side (the `compare_models` DAG): the trigger conf and its Params (`config`),
resolving each chosen model to what the step loads and writing the spec (`plan`), and the heavy step's
library: each model loaded once and asked every prompt in turn with streaming, so time to first token,
tokens/s and latency are measured per answer (`local_models` for PyTorch and ONNX Runtime, `endpoint`
for an OpenAI-compatible API, `step` running them one after another and writing `results.json`).

The conf, its Params and the planning are light (the DAG processor and the worker import them); torch,
transformers, optimum and requests load only inside the step. May import `tasks.config`,
`tasks.contracts`, `tasks.storage`, `tasks.runtime`, `tasks.registry`, `tasks.scoring`, `tasks.training`
and `tasks.exporting` (loading an ONNX export as the export checks do).
"""
