"""What several command groups share: the `--store` option and plain-text tables."""

from __future__ import annotations

import argparse

from tasks.storage import store


def store_root(args: argparse.Namespace) -> str:
    # Read at call time, not parse time, so TUNERFLOW_STORE set after import still counts.
    return args.store or store.default_root()


def add_store_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--store", help="artifact store root URI (default: $TUNERFLOW_STORE or ~/.tunerflow/store)"
    )


def table(headers: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(str(cell)) for cell in column) for column in zip(headers, *rows, strict=False)]
    lines = [headers, ["-" * w for w in widths], *rows]
    return "\n".join(
        "  ".join(str(c).ljust(w) for c, w in zip(line, widths, strict=True)).rstrip() for line in lines
    )
