"""`python -m tasks.merge --job <spec>`: merge the top jobs of one base model into a candidate.

The command a merged candidate's `train_argv` names: the merge "trains" the candidate and commits a
`TrainResult` where a training would, so it is scored, ranked, exported and promoted like a job. The step
protocol is `tasks.runtime.step`; the work is `tasks.merging.merge_step`; the spec is
`tasks.contracts.merge`.
"""

from tasks.contracts.merge import MergeSpec
from tasks.contracts.train import TrainResult
from tasks.merging.merge_step import merge
from tasks.runtime.step import main

if __name__ == "__main__":
    raise SystemExit(main("merge", merge, spec=MergeSpec, result=TrainResult))
