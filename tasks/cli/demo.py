"""`tunerflow demo`: run an experiment end to end in this process with an embedded Airflow (SQLite).

The terminal shows a live view (`live_view`, `live_poll`, `live_output`): one line per task with its state
and duration, and the step, loss and ETA of the job training now. Airflow's full log goes to a file whose
path is printed first. The end is the summary, and how to open the run in the Airflow UI.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from datetime import datetime
from functools import partial
from pathlib import Path
from typing import Any

from tasks.cli import live_poll
from tasks.cli.live_output import Display, output_to, watching
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


def load_dag() -> Any:
    sys.path.insert(0, str(REPO_ROOT / "dags"))
    # The DAG file is on the path only once inserted above, and importing it loads Airflow.
    from finetune_experiment import dag

    return dag


def run_experiment(conf: dict[str, Any], dag: Any = None) -> dict[str, Any]:
    """Run the DAG once in this process with `dag.test()` (real Airflow task runner, SQLite)."""
    dag = dag or load_dag()
    started = time.perf_counter()
    run = dag.test(run_conf=conf)
    minutes = (time.perf_counter() - started) / 60
    run_uri = layout.run(store.default_root(), conf["name"], run.run_id)
    summary_uri = store.join(run_uri, "summary.json")
    summary = store.read_json(summary_uri) if store.exists(summary_uri) else {}
    return {"state": str(run.state), "run_id": run.run_id, "minutes": round(minutes, 1), "summary": summary}


def run_live(conf: dict[str, Any], log_path: Path, rich: bool | None = None) -> dict[str, Any]:
    """`run_experiment` with the live view on the terminal and everything Airflow prints in `log_path`."""
    dag = load_dag()
    poll = partial(
        live_poll.snapshot,
        dag.dag_id,
        live_poll.newest_run_id(dag.dag_id),
        list(dag.task_ids),
        store.default_root(),
        conf["name"],
    )
    with output_to(log_path) as terminal, watching(poll, Display(terminal, rich=rich)):
        return run_experiment(conf, dag)


def _print_result(result: dict[str, Any]) -> None:
    print("\n" + "=" * 100)
    print(f"Experiment run {result['run_id']}: {result['state']} in {result['minutes']} min")
    summary = RunSummary.model_validate(result["summary"]) if result["summary"] else None
    board = read_leaderboard(summary.run_uri) if summary else None
    if board:
        print(format_summary(summary, board))
    print("=" * 100)


def ui_help(env: dict[str, str]) -> str:
    """How to open the run's pages: an Airflow on the same home and store, and the plugin's pages."""
    variables = " ".join(f"{key}={value}" for key, value in env.items())
    return (
        "Open it in the Airflow UI (the tunerflow pages read the store above):\n"
        f"  {variables} airflow standalone\n"
        "  (or `airflow api-server` beside a running scheduler), then\n"
        "  http://localhost:8080/tunerflow/experiments"
    )


def cmd_demo(args: argparse.Namespace) -> int:
    home = Path(args.home).expanduser().resolve()
    store_root = args.store or (home / "store").as_uri()
    env = airflow_env(home / "airflow", store_root)
    os.environ.update(env)
    ensure_airflow_db(env)
    conf = load_conf(Path(args.conf) if args.conf else demo_conf_path())
    log_path = home / "logs" / f"demo-{datetime.now():%Y%m%d-%H%M%S}.log"
    print(f"Airflow's full log: {log_path}", flush=True)
    result = run_live(conf, log_path)
    _print_result(result)
    print(f"Airflow's full log: {log_path}")
    print(ui_help(env))
    return 0 if result["state"].endswith("success") else 1


def add_demo_parser(sub: argparse._SubParsersAction) -> None:
    demo = sub.add_parser("demo", help="run the demo experiment end to end with an embedded Airflow")
    demo.add_argument("--conf", help="experiment YAML/JSON (default: include/configs/experiments/demo.yaml)")
    demo.add_argument("--home", default=".tunerflow", help="where the embedded Airflow and store live")
    demo.add_argument("--store", help="artifact store root URI (default: <home>/store)")
    demo.set_defaults(fn=cmd_demo)
