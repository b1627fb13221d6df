"""`python -m tasks.export --job <spec>`: merge the winner and export it to ONNX (fp32, fp16, INT8).

The command every stored spec and pod names. The step protocol is `tasks.runtime.step`; the work is
`tasks.exporting.export_step`; the spec and result are `tasks.contracts.export`.
"""

from tasks.contracts.export import ExportResult, ExportSpec
from tasks.exporting.export_step import export
from tasks.runtime.step import main

if __name__ == "__main__":
    raise SystemExit(main("export", export, spec=ExportSpec, result=ExportResult))
