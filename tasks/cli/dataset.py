"""`tunerflow dataset create|list|show|update|delete|prepare`: register datasets once and reference them
from experiments (`datasets[].registered`)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from tasks.cli.common import add_store_option, store_root
from tasks.cli.dataset_views import cmd_dataset_list, cmd_dataset_show, counts_line
from tasks.config.base import format_validation_error
from tasks.config.catalog import default_model, models, resolve_model
from tasks.config.dataset import DatasetConfig
from tasks.config.models import ModelConfig
from tasks.contracts.prepare import PrepareSpec
from tasks.data import dataset_registry

# Options shared by `dataset create` and `dataset update`: (flag, DatasetConfig field, argparse keywords).
DEFINITION_OPTIONS: tuple[tuple[str, str, dict[str, Any]], ...] = (
    ("--uri", "uri", {"help": "one file, glob, s3://, hf: or builtin: URI holding the rows"}),
    ("--train-uri", "train_uri", {"help": "pre-split input: the training rows"}),
    ("--validation-uri", "validation_uri", {"help": "pre-split input: the validation rows"}),
    ("--test-uri", "test_uri", {"help": "pre-split input: the test rows"}),
    ("--format", "format", {"help": "row format (auto, alpaca, sharegpt, messages, text, ...)"}),
    ("--split", "split", {"help": "train,validation,test percentages, e.g. 90,5,5"}),
    ("--seed", "seed", {"type": int, "help": "seed of the deterministic split"}),
    ("--min-tokens", "min_tokens", {"type": int, "help": "drop rows shorter than this many tokens"}),
    ("--max-tokens", "max_tokens", {"type": int, "help": "drop rows longer than this many tokens"}),
    ("--pii", "pii", {"choices": ("off", "redact", "drop"), "help": "emails, phones, IPs, keys"}),
    ("--max-drop-ratio", "max_drop_ratio", {"type": float, "help": "fail above this dropped fraction"}),
    ("--decontaminate-ngram", "decontaminate_ngram", {"type": int, "help": "0 turns it off"}),
    ("--max-row-bytes", "max_row_bytes", {"type": int, "help": "drop longer rows unparsed (default 1 MiB)"}),
    ("--near-dedup-threshold", "near_dedup_threshold", {"type": float, "help": "with --dedup near: Jaccard"}),
    (
        "--near-dedup-shingle",
        "near_dedup_shingle",
        {"type": int, "help": "with --dedup near: words a shingle"},
    ),
)


def _add_definition_options(parser: argparse.ArgumentParser, update: bool) -> None:
    parser.add_argument("--file", help="YAML or JSON file holding a dataset definition (options override it)")
    parser.add_argument(
        "--source",
        action="append",
        metavar="URI[=WEIGHT]",
        help="one source of a mixed dataset with its sampling weight (repeat for each source)",
    )
    for flag, _field, keywords in DEFINITION_OPTIONS:
        parser.add_argument(flag, **keywords)
    parser.add_argument(
        "--column", action="append", metavar="KEY=SRC", help="read the format's KEY from column SRC (repeat)"
    )
    parser.add_argument(
        "--filter", action="append", metavar="NAME", help="a data plugin's row filter (repeat)"
    )
    parser.add_argument(
        "--dedup",
        nargs="?",
        const="exact",
        choices=("exact", "near", "none"),
        help="exact (the default) drops rows equal once case and spacing are folded; near also drops rows "
        "that resemble an earlier one (MinHash over word shingles)",
    )
    parser.add_argument(
        "--no-dedup", dest="dedup", action="store_const", const="none", help="keep duplicates"
    )
    parser.add_argument("--note", default="", help="why this revision was made, kept in its history")
    if update:
        parser.add_argument(
            "--unset", action="append", metavar="FIELD", help="reset a field to its default (repeat)"
        )
    parser.add_argument("--prepare", action="store_true", help="prepare the dataset right away")
    _add_model_option(parser)


def _add_model_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--model",
        action="append",
        default=[],
        metavar="CATALOG_NAME",
        help="catalog model whose tokenizer counts tokens for min/max_tokens (repeat for each model)",
    )


def _pairs(values: list[str] | None, option: str) -> list[tuple[str, str]]:
    pairs = []
    for value in values or []:
        key, sep, rest = value.partition("=")
        if not sep or not key or not rest:
            raise ValueError(f"{option} '{value}': expected KEY=VALUE")
        pairs.append((key, rest))
    return pairs


def _parse_source(value: str) -> dict[str, Any]:
    # The weight is whatever follows the last '=' when it is a number; URIs may hold '=' themselves.
    uri, sep, weight = value.rpartition("=")
    if sep and uri:
        try:
            return {"uri": uri, "weight": float(weight)}
        except ValueError:
            pass
    return {"uri": value}


def _option_changes(args: argparse.Namespace) -> dict[str, Any]:
    """The definition fields given on the command line, and only those."""
    changes: dict[str, Any] = {}
    for _flag, field, _keywords in DEFINITION_OPTIONS:
        if getattr(args, field) is not None:
            changes[field] = getattr(args, field)
    if args.source:
        changes["sources"] = [_parse_source(value) for value in args.source]
    if args.column:
        changes["columns"] = dict(_pairs(args.column, "--column"))
    if args.filter:
        changes["filters"] = list(args.filter)
    if args.dedup is not None:
        changes["dedup"] = args.dedup
    return changes


def _read_definition_file(path: str | None) -> dict[str, Any]:
    if not path:
        return {}
    try:
        loaded = yaml.safe_load(Path(path).read_text())
    except (OSError, yaml.YAMLError) as error:
        raise ValueError(f"--file {path}: {error}") from None
    if not isinstance(loaded, dict):
        raise ValueError(f"--file {path}: expected a mapping of dataset fields")
    return dataset_registry.definition_of(loaded)


def _route_to_sources(changes: dict[str, Any], base: dict[str, Any]) -> dict[str, Any]:
    """With mixed sources, --format and --column describe each source's rows, so set them per source."""
    switching = any(changes.get(mode) for mode in dataset_registry.SOURCE_MODES if mode != "sources")
    sources = changes.get("sources") or ([] if switching else base.get("sources"))
    per_source = {key: changes[key] for key in ("format", "columns") if key in changes}
    if not sources or not per_source:
        return changes
    rest = {key: value for key, value in changes.items() if key not in per_source}
    return {**rest, "sources": [{**source, **per_source} for source in sources]}


def _describe(record: dict[str, Any]) -> str:
    return f"{dataset_registry.source_summary(record)}, format {dataset_registry.format_summary(record)}"


def cmd_dataset_create(args: argparse.Namespace) -> int:
    root = store_root(args)
    base = _read_definition_file(args.file)
    changes = _route_to_sources(_option_changes(args), base)
    definition = dataset_registry.merge(base, {**changes, "name": args.name})
    record = dataset_registry.create(root, definition, note=args.note)
    print(f"dataset '{args.name}' registered: revision {record['revision']} ({_describe(record)})")
    return _run_prepare(root, args.name, args.model) if args.prepare else 0


def cmd_dataset_update(args: argparse.Namespace) -> int:
    root = store_root(args)
    current = dataset_registry.get(root, args.name)
    file_changes = _read_definition_file(args.file)
    changes = dataset_registry.merge(file_changes, _route_to_sources(_option_changes(args), current))
    for field in args.unset or []:
        if field not in DatasetConfig.model_fields or field in ("name", "registered"):
            raise ValueError(f"--unset {field}: not a field that can be reset")
        changes[field] = None
    record = dataset_registry.update(root, args.name, changes, note=args.note)
    changed = dataset_registry.changed_fields(current, record)
    print(f"dataset '{args.name}' updated: revision {record['revision']} (changed: {', '.join(changed)})")
    return _run_prepare(root, args.name, args.model) if args.prepare else 0


def _run_prepare(root: str, name: str, model_names: list[str]) -> int:
    definition = dataset_registry.definition_of(dataset_registry.get(root, name))
    try:
        tokenizers = [resolve_model(ModelConfig(name=m)).model_dump() for m in model_names]
    except ValidationError as error:
        raise ValueError(f"--model: {format_validation_error(error)}") from None
    checks = DatasetConfig.model_validate(definition).length_checks
    defaulted = None
    if checks and not tokenizers:
        # The length check the definition sets runs with the catalog's default tokenizer, never not at all.
        defaulted = default_model()
        tokenizers = [defaulted.model_dump()]
        print(
            f"counting tokens for {' and '.join(checks)} with the tokenizer of '{defaulted.name}', the "
            "catalog's default model (pass --model to count with your models' tokenizers)",
            flush=True,
        )
    print(f"preparing dataset '{name}'...", flush=True)
    # The preparation step pulls in its worker pool and tokenizers: only loaded to prepare.
    import tasks.data.preparation as prepare_dataset

    try:
        result = prepare_dataset.prepare(
            PrepareSpec(store_root=root, dataset=definition, tokenizers=tokenizers)
        )
    except Exception as error:
        hint = ""
        if defaulted is not None and f"the tokenizer of {defaulted.name} could not" in str(error):
            others = ", ".join(m for m in models() if m != defaulted.name)
            hint = f"; pass --model CATALOG_NAME with a model whose tokenizer loads here (catalog: {others})"
        print(f"preparing dataset '{name}' failed: {error}{hint}", file=sys.stderr)
        return 1
    print(f"dataset '{name}' prepared: version {result['version']} ({result.get('kind', '?')} rows)")
    print(f"  {counts_line(result)}")
    print(f"  {result.get('uri', '')}")
    return 0


def cmd_dataset_prepare(args: argparse.Namespace) -> int:
    return _run_prepare(store_root(args), args.name, args.model)


def _confirm(question: str) -> bool | None:
    """The user's answer, or None when there is no terminal to ask on."""
    if not sys.stdin.isatty():
        return None
    return input(f"{question} [y/N] ").strip().lower() in ("y", "yes")


def cmd_dataset_delete(args: argparse.Namespace) -> int:
    root = store_root(args)
    revisions = len(dataset_registry.history(root, args.name))
    what = f"registered dataset '{args.name}' ({revisions} revision{'s' if revisions != 1 else ''})"
    if args.purge:
        what += f" and its {len(dataset_registry.prepared_versions(root, args.name))} prepared version(s)"
    if not args.yes:
        answer = _confirm(f"Delete {what}?")
        if answer is None:
            print(f"refusing to delete {what} without confirmation: pass --yes", file=sys.stderr)
            return 2
        if not answer:
            print("nothing deleted")
            return 1
    removed = dataset_registry.delete(root, args.name, purge=args.purge)
    purged = f"; purged versions: {', '.join(removed['purged_versions']) or 'none'}" if args.purge else ""
    print(f"deleted dataset '{args.name}' ({len(removed['revisions'])} revisions){purged}")
    return 0


def cmd_dataset(args: argparse.Namespace) -> int:
    """Run one `tunerflow dataset` subcommand; a refused request prints its reason and exits 2."""
    try:
        return args.dataset_fn(args)
    except (dataset_registry.DatasetRegistryError, ValueError) as error:
        print(error, file=sys.stderr)
        return 2


def add_dataset_parser(sub: argparse._SubParsersAction) -> None:
    dataset = sub.add_parser("dataset", help="register datasets once and reference them from experiments")
    dsub = dataset.add_subparsers(dest="dataset_command", required=True)
    dataset.set_defaults(fn=cmd_dataset)

    create = dsub.add_parser("create", help="register a dataset definition")
    create.add_argument("name")
    _add_definition_options(create, update=False)
    update = dsub.add_parser("update", help="change a registered definition (a new revision)")
    update.add_argument("name")
    _add_definition_options(update, update=True)
    listing = dsub.add_parser("list", help="registered datasets with their prepared versions")
    listing.add_argument("--json", action="store_true", help="print JSON instead of a table")
    show = dsub.add_parser("show", help="a definition, its revisions, prepared versions and drop reasons")
    show.add_argument("name")
    show.add_argument("--revision", type=int, help="show this revision's definition instead of the latest")
    show.add_argument("--json", action="store_true", help="print JSON")
    delete = dsub.add_parser("delete", help="remove a registration (all revisions)")
    delete.add_argument("name")
    delete.add_argument("--purge", action="store_true", help="also delete every prepared version")
    delete.add_argument("--yes", action="store_true", help="do not ask for confirmation")
    prepare = dsub.add_parser("prepare", help="validate, split and version a registered dataset now")
    prepare.add_argument("name")
    _add_model_option(prepare)
    handlers = {
        create: cmd_dataset_create,
        update: cmd_dataset_update,
        listing: cmd_dataset_list,
        show: cmd_dataset_show,
        delete: cmd_dataset_delete,
        prepare: cmd_dataset_prepare,
    }
    for parser, handler in handlers.items():
        add_store_option(parser)
        parser.set_defaults(dataset_fn=handler)
