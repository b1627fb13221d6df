"""What `tunerflow dataset list` and `tunerflow dataset show` print: the registry's datasets, one
definition with its revisions and prepared versions, and the counts line of a prepared version."""

from __future__ import annotations

import argparse
import json
from typing import Any

from tasks.cli.common import store_root, table
from tasks.config.dataset import DatasetConfig
from tasks.data import dataset_registry

SPLIT_ORDER = ("train", "validation", "test")


def counts_line(result: dict[str, Any]) -> str:
    counts = result.get("counts") or {}
    # Split order, not the stored (sorted) key order.
    order = sorted(counts, key=lambda split: (SPLIT_ORDER.index(split) if split in SPLIT_ORDER else 3, split))
    line = ", ".join(f"{split} {counts[split]}" for split in order)
    reasons = result.get("drop_reasons") or {}
    detail = f" ({', '.join(f'{r} {n}' for r, n in reasons.items())})" if reasons else ""
    return f"{line}; dropped {result.get('dropped', 0)}{detail}"


def _short_counts(counts: dict[str, int] | None) -> str:
    if not counts:
        return "-"
    return "/".join(str(counts.get(split, 0)) for split in SPLIT_ORDER)


def cmd_dataset_list(args: argparse.Namespace) -> int:
    rows = dataset_registry.list_datasets(store_root(args))
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    if not rows:
        print("no registered datasets; register one with `tunerflow dataset create NAME --uri ...`")
        return 0
    headers = ["NAME", "REV", "SOURCE", "FORMAT", "PREPARED", "LATEST TRAIN/VAL/TEST"]
    cells = [
        [
            r["name"],
            str(r["revision"]),
            r["source"],
            r["format"],
            str(r["prepared_versions"]),
            _short_counts(r["latest_counts"]),
        ]
        for r in rows
    ]
    print(table(headers, cells))
    return 0


def _show_payload(root: str, name: str, revision: int | None) -> dict[str, Any]:
    versions = dataset_registry.prepared_versions(root, name)
    latest = versions[0]["version"] if versions else None
    return {
        "definition": dataset_registry.get(root, name, revision),
        "history": dataset_registry.history(root, name),
        "prepared_versions": versions,
        "validation_report": dataset_registry.validation_report(root, name, latest) if latest else None,
    }


def _print_definition(record: dict[str, Any]) -> None:
    order = {field: index for index, field in enumerate(DatasetConfig.model_fields)}
    config = dataset_registry.definition_of(record)
    print("definition:")
    # In the config's own field order (the stored JSON is sorted), leaving out what is not set.
    for key in sorted(config, key=lambda k: (order.get(k, len(order)), k)):
        value = config[key]
        if key == "sources" and value:
            print("  sources:")
            for source in value:
                extra = f", columns {json.dumps(source['columns'])}" if source.get("columns") else ""
                print(f"    - {source['uri']} (weight {source['weight']}, format {source['format']}{extra})")
        elif value not in (None, [], {}) and not (key == "format" and config.get("sources")):
            print(f"  {key}: {json.dumps(value) if isinstance(value, list | dict) else value}")


def _print_history(history: list[dict[str, Any]]) -> None:
    print("revisions:")
    previous: dict[str, Any] | None = None
    for entry in history:
        changed = ", ".join(dataset_registry.changed_fields(previous, entry)) if previous else "created"
        note = f"  {entry['note']}" if entry.get("note") else ""
        print(f"  {entry['revision']:>4}  {entry['created_at']}  {changed}{note}")
        previous = entry


def _print_versions(versions: list[dict[str, Any]], report: dict[str, Any] | None) -> None:
    print("prepared versions:" if versions else "prepared versions: none")
    for version in versions:
        if version["ready"]:
            print(f"  {version['version']}  {version['committed_at']}  {counts_line(version['result'])}")
        else:
            why = f": {version['error']}" if version.get("error") else ""
            print(f"  {version['version']}  not ready ({version['state']}{why})")
    if report:
        print(
            f"latest validation report ({versions[0]['version']}): {report.get('rows_in', '?')} rows in, "
            f"{report.get('rows_kept', '?')} kept, {report.get('rows_dropped', '?')} dropped"
        )
        for reason, count in sorted((report.get("drop_reasons") or {}).items(), key=lambda item: -item[1]):
            print(f"  {reason}: {count}")


def _print_show(payload: dict[str, Any]) -> None:
    record = payload["definition"]
    print(f"dataset {record['name']}: revision {record['revision']} of {len(payload['history'])}")
    _print_definition(record)
    _print_history(payload["history"])
    _print_versions(payload["prepared_versions"], payload["validation_report"])


def cmd_dataset_show(args: argparse.Namespace) -> int:
    payload = _show_payload(store_root(args), args.name, args.revision)
    if args.json:
        print(json.dumps(payload, indent=2))
    else:
        _print_show(payload)
    return 0
