"""`tunerflow validate CONF` and `tunerflow schema`: check a conf as the first task would, and print the
trigger form's JSON Schema."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from tasks.config import allowed_paths
from tasks.config.base import ConfError
from tasks.config.catalog import resolve_experiment
from tasks.config.experiment import parse_experiment
from tasks.config.params import field_schemas, load_conf
from tasks.pipeline.plan import eval_definition, path_problems, prepared_definitions
from tasks.storage import store


def cmd_validate(args: argparse.Namespace) -> int:
    try:
        experiment = parse_experiment(load_conf(Path(args.conf)))
        resolve_experiment(experiment)
        root = store.default_root()
        definitions = prepared_definitions(experiment, root)  # registered datasets exist
        # Paths are bounded only where TUNERFLOW_ALLOWED_PATHS is set: your own machine allows every path.
        outside = path_problems(
            experiment, definitions, eval_definition(experiment, root), allowed_paths.configured()
        )
        if outside:
            raise ConfError("invalid experiment conf:\n" + "\n".join(outside))
    except (ConfError, ValueError) as error:
        print(error, file=sys.stderr)
        return 2
    jobs = len(experiment.datasets) * len(experiment.models) * len(experiment.hparams)
    print(f"{args.conf}: valid, {jobs} training jobs")
    return 0


def cmd_schema(args: argparse.Namespace) -> int:
    print(json.dumps(field_schemas(), indent=2))
    return 0


def add_conf_parsers(sub: argparse._SubParsersAction) -> None:
    validate = sub.add_parser("validate", help="validate an experiment conf without running it")
    validate.add_argument("conf")
    validate.set_defaults(fn=cmd_validate)
    schema = sub.add_parser("schema", help="print the trigger form's JSON Schema, per Param")
    schema.set_defaults(fn=cmd_schema)
