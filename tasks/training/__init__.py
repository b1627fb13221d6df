"""Training one job: base models (converted once, loaded safely), the trainer for each training type
and method, committed checkpoints.

May import `tasks.config`, `tasks.contracts`, `tasks.storage` and `tasks.runtime`; torch,
transformers, peft and trl inside functions.
"""
