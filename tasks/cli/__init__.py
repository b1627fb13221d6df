"""The `tunerflow` command line, one module per command group.

May import any package.
"""
