"""`tunerflow demo`: run an experiment end to end in this process with an embedded Airflow (SQLite)."""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from tasks.config.catalog import REPO_ROOT
from tasks.config.params import demo_conf_path, load_conf
from tasks.contracts.summary import RunSummary
from tasks.pipeline.orchestration import format_summary, read_leaderboard
from tasks.storage import layout, store


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
    # The DAG file is on the path only once inserted above, and importing it loads Airflow.
    from finetune_experiment import dag

    started = time.perf_counter()
    run = dag.test(run_conf=conf)
    minutes = (time.perf_counter() - started) / 60
    run_uri = layout.run(store.default_root(), conf["name"], run.run_id)
    summary_uri = store.join(run_uri, "summary.json")
    summary = store.read_json(summary_uri) if store.exists(summary_uri) else {}
    return {"state": str(run.state), "run_id": run.run_id, "minutes": round(minutes, 1), "summary": summary}


def _print_result(result: dict[str, Any]) -> None:
    print("\n" + "=" * 100)
    print(f"Experiment run {result['run_id']}: {result['state']} in {result['minutes']} min")
    summary = RunSummary.model_validate(result["summary"]) if result["summary"] else None
    board = read_leaderboard(summary.run_uri) if summary else None
    if board:
        print(format_summary(summary, board))
    print("=" * 100)


def cmd_demo(args: argparse.Namespace) -> int:
    home = Path(args.home).expanduser().resolve()
    store_root = args.store or (home / "store").as_uri()
    os.environ.update(airflow_env(home / "airflow", store_root))
    ensure_airflow_db(airflow_env(home / "airflow", store_root))
    conf = load_conf(Path(args.conf) if args.conf else demo_conf_path())
    result = run_experiment(conf)
    _print_result(result)
    return 0 if result["state"].endswith("success") else 1


def add_demo_parser(sub: argparse._SubParsersAction) -> None:
    demo = sub.add_parser("demo", help="run the demo experiment end to end with an embedded Airflow")
    demo.add_argument("--conf", help="experiment YAML/JSON (default: include/configs/experiments/demo.yaml)")
    demo.add_argument("--home", default=".tunerflow", help="where the embedded Airflow and store live")
    demo.add_argument("--store", help="artifact store root URI (default: <home>/store)")
    demo.set_defaults(fn=cmd_demo)
