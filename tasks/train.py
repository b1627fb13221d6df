"""`python -m tasks.train --job <spec>`: train one job; a retry resumes from its newest committed checkpoint.

The command every stored spec and pod names. The step protocol is `tasks.runtime.step`; the work is
`tasks.training.trainer`; the spec and result are `tasks.contracts.train`.
"""

from tasks.contracts.train import TrainResult, TrainSpec
from tasks.runtime.step import main
from tasks.training.trainer import train

if __name__ == "__main__":
    raise SystemExit(main("train", train, distributed=True, spec=TrainSpec, result=TrainResult))
