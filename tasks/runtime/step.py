"""The step protocol shared by every heavy entrypoint (`python -m tasks.<step> --job <json-or-uri>`).

A step reads its job spec, writes under `job["output"]`, commits `manifest.json` last and prints one
JSON result line on stdout (logs go to stderr). A committed output is not computed again. A failure
writes `error.json` beside the partial output and exits 1 with a readable message.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tasks.runtime import launch
from tasks.runtime.errors import StepError
from tasks.storage import store

log = logging.getLogger("tunerflow")

# KubernetesPodOperator(do_xcom_push=True) reads the pod's result from this file.
XCOM_FILE = Path("/airflow/xcom/return.json")


def load_job(arg: str) -> dict[str, Any]:
    text = arg.strip()
    if text.startswith("{"):
        return json.loads(text)
    return store.read_json(text)


def configure_logging() -> None:
    logging.basicConfig(
        stream=sys.stderr, level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    for noisy in ("httpx", "urllib3", "filelock"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def emit(result: dict[str, Any]) -> None:
    line = json.dumps(result, sort_keys=True, default=str)
    print(line, flush=True)
    if XCOM_FILE.parent.is_dir():
        XCOM_FILE.write_text(line)


def execute(name: str, fn: Callable[[dict[str, Any]], dict[str, Any]], job: dict[str, Any]) -> dict[str, Any]:
    """Run one step body idempotently; returns the committed result. Raises on failure."""
    prefix = job["output"]
    cached = store.committed_result(prefix)
    if cached is not None:
        log.info("%s: output already committed at %s, skipping", name, prefix)
        return cached
    if not launch.is_main_process():
        # Another process of a torchrun launch: rank 0 alone resets, commits and reports failures.
        return fn(job)
    store.reset(prefix)
    store.local_dir(prefix)
    try:
        result = fn(job)
    except BaseException as error:
        # SystemExit/KeyboardInterrupt too: a preempted step must still say why it stopped.
        store.write_json(
            store.join(prefix, "error.json"),
            {"step": name, "type": type(error).__name__, "message": str(error) or type(error).__name__},
        )
        raise
    store.commit(prefix, result)
    return result


def main(
    name: str,
    fn: Callable[[dict[str, Any]], dict[str, Any]],
    argv: list[str] | None = None,
    complete_job: Callable[[dict[str, Any]], dict[str, Any]] | None = None,
    distributed: bool = False,
) -> int:
    """CLI wrapper; `complete_job` fills in fields (such as `output`) known only once inputs are read.
    A `distributed` step re-executes itself under torchrun when it has several devices
    (tasks.runtime.launch)."""
    parser = argparse.ArgumentParser(prog=f"python -m tasks.{name}", description=fn.__doc__)
    parser.add_argument("--job", required=True, help="job spec as inline JSON or the URI of a job.json")
    args = parser.parse_args(argv)
    configure_logging()
    if distributed:
        launch.relaunch_if_needed(f"tasks.{name}", sys.argv[1:] if argv is None else argv)
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    try:
        job = load_job(args.job)
        result = execute(name, fn, complete_job(job) if complete_job else job)
    except StepError as error:
        log.error("%s failed: %s", name, error)
        return 1
    except Exception as error:
        log.error("%s failed: %s: %s\n%s", name, type(error).__name__, error, traceback.format_exc())
        return 1
    if launch.is_main_process():
        emit(result)
    return 0
