"""`tunerflow` command line: run the demo, validate a conf, print the trigger-form schema, manage
registered datasets (`tunerflow dataset create|list|show|update|delete|prepare`), list and show the
hyperparameter presets (`tunerflow hparams list|show|table`) and the model registry
(`tunerflow registry ...`)."""

from __future__ import annotations

import argparse

from tasks.cli.conf import add_conf_parsers
from tasks.cli.dataset import add_dataset_parser
from tasks.cli.demo import add_demo_parser
from tasks.cli.hparams import add_hparams_parser
from tasks.cli.registry import add_registry_parser


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="tunerflow", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    add_demo_parser(sub)
    add_conf_parsers(sub)
    add_dataset_parser(sub)
    add_hparams_parser(sub)
    add_registry_parser(sub)
    args = parser.parse_args(argv)
    return args.fn(args)


if __name__ == "__main__":
    raise SystemExit(main())
