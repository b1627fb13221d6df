"""`python -m tasks.compare_models --job <spec>`: ask two to four models the same prompts, one model after
another, and record each answer with its prompt and completion tokens, time to first token, tokens/s and
latency.

The command the compare_models DAG runs (a subprocess, or a pod). The step protocol is
`tasks.runtime.step`; the work is `tasks.compare.step`; the spec and result are `tasks.contracts.compare`.
"""

from tasks.compare.step import compare_models
from tasks.contracts.compare import CompareResult, CompareSpec
from tasks.runtime.step import main

if __name__ == "__main__":
    raise SystemExit(main("compare_models", compare_models, spec=CompareSpec, result=CompareResult))
