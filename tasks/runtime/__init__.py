"""What every heavy step process shares: the job-spec protocol (read the spec, run idempotently,
commit, print one result line) and the torchrun relaunch for several devices.

May import `tasks.storage` only; it is imported by every step.
"""
