"""What every heavy step process shares: the job-spec protocol (read the spec, run idempotently,
commit, print one result line), the torchrun relaunch for several devices and the stop of a step
whose task died (`orphan`).

May import `tasks.storage` (the step protocol reads specs and commits through the store).
`tasks.runtime.errors` imports nothing, so the storage layer can raise `StepError`.
"""
