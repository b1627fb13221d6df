"""`python -m tasks.prepare_dataset --job <spec>`:
validate, clean and split one dataset, with a reason for every dropped row.

The command every stored spec and pod names. The step protocol is `tasks.runtime.step`; the work is
`tasks.data.preparation`; the spec and result are `tasks.contracts.prepare`.
"""

from tasks.contracts.prepare import PreparedDataset, PrepareSpec
from tasks.data.preparation import complete_job, prepare_dataset
from tasks.runtime.step import main

if __name__ == "__main__":
    raise SystemExit(
        main(
            "prepare_dataset",
            prepare_dataset,
            spec=PrepareSpec,
            result=PreparedDataset,
            complete_job=complete_job,
            # A version is keyed by its content: experiments on the same data name the same prefix.
            shared=True,
        )
    )
