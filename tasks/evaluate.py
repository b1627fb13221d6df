"""`python -m tasks.evaluate --job <spec>`: score one job, base model or champion on its eval rows.

The command every stored spec and pod names. The step protocol is `tasks.runtime.step`; the work is
`tasks.scoring.evaluation`; the spec and result are `tasks.contracts.evaluate`.
"""

from tasks.contracts.evaluate import EvaluateResult, EvaluateSpec
from tasks.runtime.step import main
from tasks.scoring.evaluation import evaluate

if __name__ == "__main__":
    raise SystemExit(main("evaluate", evaluate, spec=EvaluateSpec, result=EvaluateResult))
