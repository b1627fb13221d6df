"""`python -m tasks.check_export --job <spec>`: check each export: parity, metric drop, latency and size.

The command every stored spec and pod names. The step protocol is `tasks.runtime.step`; the work is
`tasks.exporting.checks`; the spec and result are `tasks.contracts.export`.
"""

from tasks.contracts.export import CheckExportResult, CheckExportSpec
from tasks.exporting.checks import check_export
from tasks.runtime.step import main

if __name__ == "__main__":
    raise SystemExit(main("check_export", check_export, spec=CheckExportSpec, result=CheckExportResult))
