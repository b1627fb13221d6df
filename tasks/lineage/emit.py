"""Hand a task's lineage to the Airflow OpenLineage provider, or do nothing.

`report_step(step, argv, result)` (a heavy task, after its step returned its result line, on either
backend) and `report_promotion(store_root, decision)` (the promote task) build the task's datasets
(tasks.lineage.steps / tasks.lineage.promotion) and call the provider's public
`emit_dataset_lineage`: one RUNNING event with the task's own run id, job name and parent (the DAG run),
sent through the transport Airflow's `[openlineage]` section configures, beside the provider's own
START and COMPLETE events for the task.

Nothing happens, and nothing is read from the store, when the provider is not installed, OpenLineage
is disabled or has no transport, or the emission policy leaves the task out. Lineage never fails a task:
an error building or sending it is logged as a warning.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from typing import Any

from tasks.lineage.datasets import Lineage

log = logging.getLogger(__name__)


def active() -> bool:
    """Whether the OpenLineage provider is installed and enabled (a transport configured, not disabled)."""
    try:
        # The optional provider (tunerflow[openlineage]); its conf check is cheap, its API is not.
        from airflow.providers.openlineage import conf
    except ImportError:
        return False
    if conf.is_disabled():
        return False
    try:
        # Public since provider 2.20; an older provider gets no tunerflow datasets.
        from airflow.providers.openlineage.api import is_openlineage_active
    except ImportError:
        log.info("OpenLineage: this provider version has no emit_dataset_lineage; no tunerflow datasets")
        return False
    return is_openlineage_active()


def emit(build: Callable[[], Lineage]) -> bool:
    """Build the running task's lineage and emit it; whether an event was sent. Never raises."""
    try:
        if not active():
            return False
        lineage = build()
        if not lineage:
            return False
        # Only reached with the provider installed and enabled (see active()).
        from airflow.providers.openlineage.api import emit_dataset_lineage

        emit_dataset_lineage(inputs=lineage.inputs, outputs=lineage.outputs, raise_on_error=True)
        return True
    except Exception as error:  # lineage is an observer: it never fails the task it describes
        log.warning("OpenLineage: no tunerflow datasets for this task: %s", error)
        return False


def _spec(argv: list[str]) -> dict[str, Any]:
    """The step's spec: its argv's last word, a URI (or the spec inline, as `--job` accepts)."""
    # The store loads where a task reports its lineage, not where the DAG is parsed.
    from tasks.storage import store

    arg = str(argv[-1]).strip()
    return json.loads(arg) if arg.startswith("{") else store.read_json(arg)


def report_step(step: str, argv: list[str], result: dict[str, Any]) -> bool:
    """A heavy step's lineage, from its spec (argv's last word) and the result line it printed."""

    def build() -> Lineage:
        # The builders load only when OpenLineage is on (emit calls build only then).
        from tasks.lineage.steps import BUILDERS, step_lineage

        if step not in BUILDERS:  # compare_models: no datasets of its own, and no spec to read
            return Lineage()
        return step_lineage(step, _spec(argv), result)

    return emit(build)


def report_promotion(store_root: str, decision: dict[str, Any]) -> bool:
    """The promote task's lineage, from the decision it recorded."""

    def build() -> Lineage:
        # The builder loads only when OpenLineage is on (emit calls build only then).
        from tasks.lineage.promotion import promotion_lineage

        return promotion_lineage(store_root, decision)

    return emit(build)
