"""Waiting for a TrainJob in Airflow's triggerer (tasks.backends.trainjob submits it): the task is
deferred, so no worker slot is held while the nodes train.

Every `poll_interval_seconds` the trigger reads the TrainJob's status conditions and node 0's new log
lines, which it logs (the triggerer writes a trigger's log into the task's log). It fires once the
TrainJob is Complete or Failed (or was deleted); the task then reads the committed result or fails
(tasks.backends.trainjob_task). The kubernetes client is synchronous: its calls run in a thread, so
the triggerer's event loop is never blocked.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import AsyncIterator
from typing import Any

from airflow.triggers.base import BaseTrigger, TriggerEvent

from tasks.backends import trainjob

# Lines of node 0's log read on the first poll (or when its pod changed): the start of a long training
# that a restarted triggerer would otherwise repeat in full.
FIRST_TAIL_LINES = 1000


def sortable(timestamp: str) -> str:
    """An RFC 3339 timestamp from the kubelet (fractions with trailing zeros trimmed) made comparable
    as text: the fraction padded to nanoseconds."""
    head, _, rest = timestamp.partition(".")
    if not rest:
        return head.rstrip("Z") + ".000000000"
    return f"{head}.{rest.rstrip('Z').ljust(9, '0')}"


class NodeLog:
    """Node 0's log lines not yet logged: follows its pod (a new pod starts over) and the timestamp of
    the last line logged."""

    def __init__(self) -> None:
        self.pod: str | None = None
        self.last: str = ""
        self.read_at: float = 0.0

    def new_lines(self, api: trainjob.TrainJobApi, name: str) -> list[str]:
        pod = api.node0_pod(name)
        if pod is None:
            return []
        first = pod != self.pod
        if first:
            self.pod, self.last = pod, ""
        now = time.monotonic()
        since = None if first else max(math.ceil(now - self.read_at) + 5, 1)
        text = api.log(pod, since_seconds=since, tail_lines=FIRST_TAIL_LINES if first else None)
        self.read_at = now
        lines = []
        for raw in text.splitlines():
            stamp, _, line = raw.partition(" ")
            key = sortable(stamp)
            if key <= self.last:
                continue  # read again because of the overlap of `since`
            self.last = key
            lines.append(line)
        return lines


class TrainJobTrigger(BaseTrigger):
    """Fires `{"status": "complete" | "failed", "name": ..., "message": ...}` when the TrainJob `name`
    has finished, logging node 0's log meanwhile."""

    def __init__(self, name: str, namespace: str, conn_id: str, poll_interval: float) -> None:
        super().__init__()
        self.name = name
        self.namespace = namespace
        self.conn_id = conn_id
        self.poll_interval = poll_interval

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return (
            f"{type(self).__module__}.{type(self).__qualname__}",
            {
                "name": self.name,
                "namespace": self.namespace,
                "conn_id": self.conn_id,
                "poll_interval": self.poll_interval,
            },
        )

    def _poll(self, api: trainjob.TrainJobApi, node_log: NodeLog, reported: set[str]) -> Any:
        """Log node 0's new lines and each new status condition (Created, Suspended while Kueue queues
        it, ...); the outcome once the TrainJob has finished."""
        for line in node_log.new_lines(api, self.name):
            self.log.info("[%s node 0] %s", self.name, line)
        found = api.get(self.name)
        for kind, condition in trainjob.conditions(found or {}).items():
            key = f"{kind}={condition.get('status')}"
            if key not in reported:
                reported.add(key)
                self.log.info("TrainJob %s: %s %s", self.name, key, condition.get("message") or "")
        return trainjob.outcome(found)

    async def run(self) -> AsyncIterator[TriggerEvent]:
        api = await asyncio.to_thread(trainjob.connect, self.conn_id, self.namespace)
        node_log, reported = NodeLog(), set()
        while True:
            try:
                finished = await asyncio.to_thread(self._poll, api, node_log, reported)
            except Exception as error:  # the API not answering: keep waiting, the task's timeout bounds it
                self.log.warning("TrainJob %s: could not read its status or log: %s", self.name, error)
                finished = None
            if finished is not None:
                status, message = finished
                yield TriggerEvent({"status": status, "name": self.name, "message": message})
                return
            await asyncio.sleep(self.poll_interval)

    async def on_kill(self) -> None:
        """A user marked or cleared the deferred task: its TrainJob stops too (its GPUs are freed)."""
        api = await asyncio.to_thread(trainjob.connect, self.conn_id, self.namespace)
        await asyncio.to_thread(api.delete, self.name)
