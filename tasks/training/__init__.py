"""Training one job: base models (converted once, loaded safely), the trainer for each training type
and method, committed checkpoints.

May import `tasks.config`, `tasks.contracts`, `tasks.storage`, `tasks.runtime`, and
`tasks.scoring.metrics`, `tasks.scoring.plugins` and `tasks.scoring.generation` (GRPO's reward is a
scoring metric, computed by the evaluate step's own code); torch, transformers, peft and trl inside
functions.
"""
