"""The step protocol shared by every heavy entrypoint (`python -m tasks.<step> --job <json-or-uri>`).

A step reads its job spec, writes under its `output`, commits `manifest.json` last and prints one
JSON result line on stdout (logs go to stderr). A committed output is not computed again. A failure
writes `error.json` beside the partial output and exits 1 with a readable message.

Every step declares its spec and result models (`tasks.contracts`, passed in, not imported: this package
stays below them): the spec is validated before anything runs, a bad one refused naming the field, the
step body receives the validated model, and its result is validated before it is committed.
"""

from __future__ import annotations

import argparse
import contextlib
import errno
import json
import logging
import os
import sys
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol, Self, TypeVar

from tasks.runtime import launch, orphan
from tasks.runtime.errors import StepError
from tasks.storage import store

log = logging.getLogger("tunerflow")

# KubernetesPodOperator(do_xcom_push=True) reads the pod's result from this file.
XCOM_FILE = Path("/airflow/xcom/return.json")


# What a refused spec's reader can do about it.
SPEC_REMEDY = (
    "The spec was written by another tunerflow version or by hand: fix the field named, or trigger the run "
    "again so that its planner writes every spec anew."
)


class SpecModel(Protocol):
    """A `tasks.contracts` model: validates with a readable refusal, dumps to the JSON it was given. A spec
    names its `output` (a prepare spec once `complete_job` has filled it in)."""

    output: str | None

    @classmethod
    def load(cls, data: Any, source: str, remedy: str = "") -> Self: ...

    def model_dump(self, *, mode: str) -> dict[str, Any]: ...


Spec = TypeVar("Spec", bound=SpecModel)


def load_job(arg: str, spec: type[Spec]) -> Spec:
    """The job spec given inline or by URI, validated against `spec` (StepError naming the bad fields)."""
    text = arg.strip()
    inline = text.startswith("{")
    data = json.loads(text) if inline else store.read_json(text)
    try:
        return spec.load(data, "the inline job spec" if inline else text, SPEC_REMEDY)
    except ValueError as error:
        raise StepError(str(error)) from None


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


def _emit_failure(name: str, error: BaseException) -> None:
    """The failure as one `{"error": ...}` JSON line on stdout: what the local backend reads when there is
    no error.json (a failed commit, a spec that did not load)."""
    if launch.is_main_process():
        print(json.dumps({"error": failure(name, error)}, sort_keys=True), flush=True)


def _checked(name: str, result: Any, result_model: type[SpecModel] | None) -> dict[str, Any]:
    """The result as committed: checked against the step's result model, a model dumped to its JSON (a
    caller that names no result model, such as a test's stand-in body, commits what it returns)."""
    if result_model is not None:
        try:
            result = result_model.load(result, f"{name}'s result")
        except ValueError as error:
            raise StepError(str(error)) from None
    return result if isinstance(result, dict) else result.model_dump(mode="json")


def execute(
    name: str,
    fn: Callable[[Spec], Any],
    job: Spec,
    result_model: type[SpecModel] | None = None,
    shared: bool = False,
) -> dict[str, Any]:
    """Run one step body on its validated spec, idempotently; returns the committed result (checked
    against `result_model` before it is committed). Raises on failure.

    A `shared` output is one that several runs name at once (a prepared dataset version is keyed by its
    content, so two experiments on the same data name the same prefix): it is built under the store's
    exclusive claim (`store.build_once`), so that one process builds it and the others wait for its
    manifest instead of resetting and rewriting the files it is writing."""
    prefix = job.output
    if not prefix:
        raise StepError(f"{name}: the spec names no output to write")
    cached = store.committed_result(prefix)
    if cached is not None:
        log.info("%s: output already committed at %s, skipping", name, prefix)
        return cached
    if not launch.is_main_process():
        # Another process of a torchrun launch: rank 0 alone resets, commits and reports failures.
        return fn(job)
    if shared:
        built: list[bool] = []

        def build(_directory: Path) -> dict[str, Any]:
            built.append(True)
            return _body(name, fn, job, result_model)

        result = store.build_once(prefix, build)
        if not built:
            log.info("%s: output committed at %s by another process meanwhile, skipping", name, prefix)
        return result
    store.reset(prefix)
    store.local_dir(prefix)
    result = _body(name, fn, job, result_model)
    store.commit(prefix, result)
    return result


def failure(name: str, error: BaseException) -> dict[str, str]:
    """What a failed step says about itself (error.json, and the `{"error": ...}` line of `main`). A write
    that met a full disk is a `NoSpace` whoever raised it, so the backend knows a retry can succeed."""
    kind = "NoSpace" if isinstance(error, OSError) and error.errno == errno.ENOSPC else type(error).__name__
    return {"step": name, "type": kind, "message": str(error) or kind}


def _body(name: str, fn: Callable[[Spec], Any], job: Spec, result_model: type[SpecModel] | None) -> Any:
    """The step body's checked result; on failure `error.json` says why beside the partial output."""
    try:
        return _checked(name, fn(job), result_model)
    except BaseException as error:
        # SystemExit/KeyboardInterrupt too: a preempted step must still say why it stopped. A store that is
        # full or not answering cannot take error.json: the line `main` prints still says why.
        with contextlib.suppress(OSError, store.StoreError):
            store.write_json(store.join(job.output, "error.json"), failure(name, error))
        raise


def main(
    name: str,
    fn: Callable[[Spec], Any],
    *,
    spec: type[Spec],
    result: type[SpecModel],
    argv: list[str] | None = None,
    complete_job: Callable[[Spec], Spec] | None = None,
    distributed: bool = False,
    shared: bool = False,
) -> int:
    """CLI wrapper. `spec` and `result` are the step's contracts: `fn` receives the validated spec and
    returns the result. `complete_job` fills in fields (such as `output`) known only once inputs are
    read. A `distributed` step re-executes itself under torchrun when it has several devices
    (tasks.runtime.launch). A `shared` step's output is built once however many processes want it at
    the same time (see `execute`)."""
    parser = argparse.ArgumentParser(prog=f"python -m tasks.{name}", description=fn.__doc__)
    parser.add_argument("--job", required=True, help="job spec as inline JSON or the URI of a job.json")
    args = parser.parse_args(argv)
    configure_logging()
    orphan.stop_with_parent()  # before a torchrun exec: the death signal outlives exec
    if distributed:
        launch.relaunch_if_needed(f"tasks.{name}", sys.argv[1:] if argv is None else argv)
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    try:
        job = load_job(args.job, spec)
        job = complete_job(job) if complete_job else job
        outcome = execute(name, fn, job, result, shared=shared)
    except StepError as error:
        log.error("%s failed: %s", name, error)
        _emit_failure(name, error)
        return 1
    except Exception as error:
        log.error("%s failed: %s: %s\n%s", name, type(error).__name__, error, traceback.format_exc())
        _emit_failure(name, error)
        return 1
    if launch.is_main_process():
        emit(outcome)
    return 0
