"""`tunerflow` command line: run the demo, validate a conf, print the trigger-form schema."""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from tasks.catalog import REPO_ROOT

DAG_ID = "finetune_experiment"


def airflow_env(home: Path, store_root: str) -> dict[str, str]:
    """The environment an embedded Airflow needs: its own home and SQLite DB, this repo's DAGs."""
    return {
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__CORE__DAGS_FOLDER": str(REPO_ROOT / "dags"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "TUNERFLOW_STORE": store_root,
    }


def ensure_airflow_db(env: dict[str, str]) -> None:
    marker = Path(env["AIRFLOW_HOME"]) / ".tunerflow-db-ready"
    if marker.exists():
        return
    Path(env["AIRFLOW_HOME"]).mkdir(parents=True, exist_ok=True)
    print("Initialising the Airflow metadata database (once)...", flush=True)
    subprocess.run(
        [sys.executable, "-m", "airflow", "db", "migrate"],
        env={**os.environ, **env},
        check=True,
        stdout=subprocess.DEVNULL,
    )
    marker.touch()


def run_experiment(conf: dict[str, Any]) -> dict[str, Any]:
    """Run the DAG once in this process with `dag.test()` (real Airflow task runner, SQLite)."""
    sys.path.insert(0, str(REPO_ROOT / "dags"))
    from finetune_experiment import dag

    from tasks import layout, store

    started = time.perf_counter()
    run = dag.test(run_conf=conf)
    minutes = (time.perf_counter() - started) / 60
    run_uri = layout.run(store.default_root(), conf["name"], run.run_id)
    summary_uri = store.join(run_uri, "summary.json")
    summary = store.read_json(summary_uri) if store.exists(summary_uri) else {}
    return {"state": str(run.state), "run_id": run.run_id, "minutes": round(minutes, 1), "summary": summary}


def _print_result(result: dict[str, Any]) -> None:
    from tasks import store
    from tasks.orchestration import format_summary

    summary = result["summary"]
    print("\n" + "=" * 100)
    print(f"Experiment run {result['run_id']}: {result['state']} in {result['minutes']} min")
    board_uri = store.join(summary["run_uri"], "leaderboard.json") if summary else None
    if board_uri and store.exists(board_uri):
        print(format_summary(summary, store.read_json(board_uri)))
    print("=" * 100)


def cmd_demo(args: argparse.Namespace) -> int:
    from tasks.params import demo_conf_path, load_conf

    home = Path(args.home).expanduser().resolve()
    store_root = args.store or (home / "store").as_uri()
    os.environ.update(airflow_env(home / "airflow", store_root))
    ensure_airflow_db(airflow_env(home / "airflow", store_root))
    conf = load_conf(Path(args.conf) if args.conf else demo_conf_path())
    result = run_experiment(conf)
    _print_result(result)
    return 0 if result["state"].endswith("success") else 1


def cmd_validate(args: argparse.Namespace) -> int:
    from tasks.catalog import resolve_experiment
    from tasks.config import ConfError, parse_experiment
    from tasks.params import load_conf

    try:
        experiment = parse_experiment(load_conf(Path(args.conf)))
        resolve_experiment(experiment)
    except (ConfError, ValueError) as error:
        print(error, file=sys.stderr)
        return 2
    jobs = len(experiment.datasets) * len(experiment.models) * len(experiment.hparams)
    print(f"{args.conf}: valid, {jobs} training jobs")
    return 0


def cmd_schema(args: argparse.Namespace) -> int:
    from tasks.params import field_schemas

    print(json.dumps(field_schemas(), indent=2))
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="tunerflow", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    demo = sub.add_parser("demo", help="run the demo experiment end to end with an embedded Airflow")
    demo.add_argument("--conf", help="experiment YAML/JSON (default: include/configs/experiments/demo.yaml)")
    demo.add_argument("--home", default=".tunerflow", help="where the embedded Airflow and store live")
    demo.add_argument("--store", help="artifact store root URI (default: <home>/store)")
    demo.set_defaults(fn=cmd_demo)
    validate = sub.add_parser("validate", help="validate an experiment conf without running it")
    validate.add_argument("conf")
    validate.set_defaults(fn=cmd_validate)
    schema = sub.add_parser("schema", help="print the trigger form's JSON Schema, per Param")
    schema.set_defaults(fn=cmd_schema)
    args = parser.parse_args(argv)
    return args.fn(args)


if __name__ == "__main__":
    raise SystemExit(main())
