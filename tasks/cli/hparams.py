"""`tunerflow hparams list|show|table`: the presets, one preset resolved over the defaults, and the
reference table of every hyperparameter (the README's)."""

from __future__ import annotations

import argparse
import sys

import yaml

from tasks.cli.common import table
from tasks.config.catalog import config_dir, hparam_presets, resolve_hparams
from tasks.config.form import leading_comment
from tasks.config.hparams import HParams, hparams_table


def _preset_summary(name: str) -> str:
    """The preset file's leading comment: what the recipe is for."""
    return leading_comment(config_dir() / "hparams" / f"{name}.yaml") or "-"


def cmd_hparams_list(args: argparse.Namespace) -> int:
    presets = hparam_presets()
    if not presets:
        print("no presets in include/configs/hparams/")
        return 0
    print(table(["preset", "summary"], [[name, _preset_summary(name)] for name in presets]))
    return 0


def cmd_hparams_show(args: argparse.Namespace) -> int:
    """The preset's values over the defaults, as an experiment's job would receive them."""
    try:
        resolved = resolve_hparams(HParams(preset=args.name))
    except ValueError as error:
        print(error, file=sys.stderr)
        return 2
    print(f"# {args.name}: {_preset_summary(args.name)}")
    print(yaml.safe_dump(resolved.model_dump(mode="json"), sort_keys=False), end="")
    return 0


def cmd_hparams_table(args: argparse.Namespace) -> int:
    print(hparams_table())
    return 0


def add_hparams_parser(sub: argparse._SubParsersAction) -> None:
    hparams = sub.add_parser("hparams", help="the hyperparameter presets and the fields they set")
    hsub = hparams.add_subparsers(dest="hparams_command", required=True)
    listing = hsub.add_parser("list", help="every preset with a one-line summary")
    listing.set_defaults(fn=cmd_hparams_list)
    show = hsub.add_parser("show", help="a preset's values resolved over the defaults, as YAML")
    show.add_argument("name")
    show.set_defaults(fn=cmd_hparams_show)
    reference = hsub.add_parser("table", help="every hyperparameter as a markdown table (the README's)")
    reference.set_defaults(fn=cmd_hparams_table)
