"""Scoring: metrics (evaluate modules), scoring plugins, generation, the LLM judge and the evaluate
step's library.

May import `tasks.config`, `tasks.contracts`, `tasks.storage`, `tasks.runtime`, `tasks.training`
and, for `scoring.rank_on: onnx-int8` (a job scored as it will be deployed), `tasks.exporting.export_step`.
"""
