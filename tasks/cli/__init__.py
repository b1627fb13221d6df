"""The `tunerflow` command line, one module per command group.

May import `tasks.config`, `tasks.contracts`, `tasks.storage`, `tasks.runtime`, `tasks.data`,
`tasks.training`, `tasks.scoring`, `tasks.pipeline` and `tasks.registry`.
"""
