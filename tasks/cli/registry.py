"""`tunerflow registry list|show|promote|rollback|base-models`: the model registry from a terminal.

The same registry functions the `promote` task uses (`tasks.registry.versions`), so a manual promotion
or rollback goes through the same compare-and-swap on the production pointer, on file:// and s3://
stores alike.
"""

from __future__ import annotations

import argparse
import getpass
import json
import sys
from typing import Any

import yaml

from tasks.cli.common import add_store_option, store_root, table
from tasks.registry import versions as registry

# `show` prints the lineage in reading order (the stored JSON is key-sorted); other keys follow.
SHOW_ORDER = (
    "registry",
    "version",
    "created_at",
    "production",
    "label",
    "base_model",
    "dataset",
    "hparams",
    "primary",
    "metrics",
    "checks_passed",
    "exports",
    "model_uri",
    "adapter_uri",
    "run_uri",
    "job_id",
)


class _Refused(Exception):
    """A request the command line answers with a message and exit code 2."""


def _name(args: argparse.Namespace, root: str) -> str:
    """--name, or the only registry in the store when there is exactly one."""
    if args.name:
        if not registry.version_numbers(root, args.name):
            known = registry.names(root)
            others = f"registries here: {', '.join(known)}" if known else "this store has no registry yet"
            raise _Refused(
                f"registry '{args.name}' has no versions at {registry.registry_uri(root, args.name)} "
                f"({others}; a run with promotion enabled registers its winner)"
            )
        return args.name
    known = registry.names(root)
    if len(known) == 1:
        return known[0]
    if not known:
        raise _Refused(
            f"no model registry under {root} (a run with promotion enabled registers its winner; "
            "pass --store to look elsewhere)"
        )
    raise _Refused(f"{len(known)} registries under {root}: {', '.join(known)}; pick one with --name")


def _entry(root: str, name: str, version: int) -> dict[str, Any]:
    entry = registry.get_version(root, name, version)
    if entry is None:
        numbers = registry.version_numbers(root, name)
        have = f"versions {numbers[0]} to {numbers[-1]}" if numbers else "no versions"
        raise _Refused(
            f"registry '{name}' has no version {version} (it has {have}; see `tunerflow registry list`)"
        )
    return entry


def _metric(entry: dict[str, Any]) -> str:
    primary = entry.get("primary")
    value = (entry.get("metrics") or {}).get(primary) if primary else None
    if value is None:
        return "-"
    return f"{primary}={value:.4f}" if isinstance(value, int | float) else f"{primary}={value}"


def _dataset(entry: dict[str, Any]) -> str:
    dataset = entry.get("dataset") or {}
    if not dataset.get("name"):
        return "-"
    return f"{dataset['name']}@{dataset.get('version') or '?'}"


def cmd_list(args: argparse.Namespace) -> int:
    root = store_root(args)
    name = _name(args, root)
    entries = registry.list_versions(root, name)
    pointer = registry.pointer(root, name)
    live = pointer["version"] if pointer else None
    if args.json:
        print(
            json.dumps({"registry": name, "production": pointer, "versions": entries}, indent=2, default=str)
        )
        return 0
    rows = [
        [
            str(e["version"]),
            str(e.get("created_at") or "-"),
            str(e.get("label") or "-"),
            str((e.get("base_model") or {}).get("name") or "-"),
            _dataset(e),
            _metric(e),
            "production" if e["version"] == live else "",
        ]
        for e in entries
    ]
    print(f"registry {name} ({registry.registry_uri(root, name)})")
    print(table(["VERSION", "CREATED", "LABEL", "BASE MODEL", "DATASET", "METRIC", "STATUS"], rows))
    if live is None:
        print("no version is in production yet")
    return 0


def cmd_base_models(args: argparse.Namespace) -> int:
    root = store_root(args)
    name = _name(args, root)
    rows = registry.base_models(root, name)
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    cells = [
        [
            str(r["name"] or "-"),
            str(r["hub_id"] or "-"),
            str(r["family"] or "-"),
            ",".join(map(str, r["versions"])),
            f"production: v{r['production']}" if r["production"] else "",
        ]
        for r in rows
    ]
    print(table(["BASE MODEL", "HUB ID", "FAMILY", "VERSIONS", "STATUS"], cells))
    return 0


def cmd_show(args: argparse.Namespace) -> int:
    root = store_root(args)
    name = _name(args, root)
    entry = _entry(root, name, args.version)
    pointer = registry.pointer(root, name)
    entry = {**entry, "production": bool(pointer and pointer["version"] == entry["version"])}
    ordered = [key for key in SHOW_ORDER if key in entry] + sorted(set(entry) - set(SHOW_ORDER))
    payload = {key: entry[key] for key in ordered}
    payload["decision"] = registry.read_decision(root, name, entry["version"])
    if args.json:
        print(json.dumps(payload, indent=2, default=str))
    else:
        print(yaml.safe_dump(json.loads(json.dumps(payload, default=str)), sort_keys=False), end="")
    return 0


def _actor() -> str | None:
    """Who runs the command, kept in the pointer's history; None where the system cannot name the user
    (a container running as a uid with no passwd entry and no USER variable)."""
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return None


def cmd_promote(args: argparse.Namespace) -> int:
    root = store_root(args)
    name = _name(args, root)
    version = _entry(root, name, args.version)["version"]
    current = registry.pointer(root, name)
    if current and current["version"] == version:
        print(f"registry '{name}': version {version} is already production; nothing changed")
        return 0
    expected = current["sequence"] if current else None
    reason = args.reason or "promoted by hand with `tunerflow registry promote`"
    if not registry.set_production(root, name, version, expected, reason=reason, actor=_actor()):
        now = registry.pointer(root, name) or {}
        raise _Refused(
            f"registry '{name}': someone else moved production while this promotion was deciding "
            f"(it is now version {now.get('version')}, sequence {now.get('sequence')}); nothing was "
            "written. Check `tunerflow registry list` and promote again if it is still wanted"
        )
    before = f"version {current['version']}" if current else "nothing"
    print(f"registry '{name}': production is now version {version} (was {before})")
    return 0


def cmd_rollback(args: argparse.Namespace) -> int:
    root = store_root(args)
    name = _name(args, root)
    before = registry.pointer(root, name)
    target = registry.rollback(root, name, actor=_actor())
    was = f" (was version {before['version']})" if before else ""
    print(f"registry '{name}': rolled production back to version {target}{was}")
    return 0


def cmd_registry(args: argparse.Namespace) -> int:
    try:
        return args.registry_fn(args)
    except (_Refused, registry.RegistryError, NotImplementedError, ValueError) as error:
        print(error, file=sys.stderr)
        return 2


def add_registry_parser(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("registry", help="list, show, promote and roll back registered model versions")
    rsub = parser.add_subparsers(dest="registry_command", required=True)
    parser.set_defaults(fn=cmd_registry)

    listing = rsub.add_parser("list", help="every version with its lineage; marks the production one")
    listing.add_argument("--json", action="store_true", help="print JSON instead of a table")
    show = rsub.add_parser("show", help="one version's entry: lineage, metrics, exports, decision")
    show.add_argument("version", type=int)
    show.add_argument("--json", action="store_true", help="print JSON instead of YAML")
    promote = rsub.add_parser("promote", help="point production at a version (compare-and-swap)")
    promote.add_argument("version", type=int)
    promote.add_argument("--reason", help="why, kept in the pointer's history")
    rollback = rsub.add_parser("rollback", help="point production back at the previous production version")
    bases = rsub.add_parser("base-models", help="the base models the versions were fine-tuned from")
    bases.add_argument("--json", action="store_true", help="print JSON instead of a table")
    handlers = {
        listing: cmd_list,
        show: cmd_show,
        promote: cmd_promote,
        rollback: cmd_rollback,
        bases: cmd_base_models,
    }
    for command, handler in handlers.items():
        add_store_option(command)
        command.add_argument(
            "--name",
            help="registry name (the experiment's or promotion.registry_name); optional when there is one",
        )
        command.set_defaults(registry_fn=handler)
