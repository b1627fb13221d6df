"""Where the demo's output goes: Airflow's full log (this process's and every step subprocess's) into a file,
the live view onto the terminal, redrawn with rich where the terminal is one and as plain lines of what
changed where it is not (a CI log)."""

from __future__ import annotations

import contextlib
import os
import sys
import threading
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from importlib.util import find_spec
from pathlib import Path
from typing import TextIO

from tasks.cli.live_view import Snapshot, changes, duration, eta_seconds, task_seconds

POLL_S = 2.0


@contextlib.contextmanager
def output_to(log_path: Path) -> Iterator[TextIO]:
    """Send file descriptors 1 and 2 to `log_path`, so that the step subprocesses and Airflow's handlers
    write there, and `sys.stdout`/`sys.stderr` too (they need not be on those descriptors); yield a stream
    on the terminal that descriptor 1 pointed to before."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    sys.stdout.flush()
    sys.stderr.flush()
    saved = {fd: os.dup(fd) for fd in (1, 2)}
    terminal = os.fdopen(os.dup(saved[1]), "w", buffering=1)
    with open(log_path, "ab", buffering=0) as log, open(log_path, "a", buffering=1) as text:
        for fd in saved:
            os.dup2(log.fileno(), fd)
        try:
            with contextlib.redirect_stdout(text), contextlib.redirect_stderr(text):
                yield terminal
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            for fd, copy in saved.items():
                os.dup2(copy, fd)
                os.close(copy)
            terminal.close()


def rich_table(snapshot: Snapshot, now: datetime):
    """The view as a rich Table: one row per task, then the job training now."""
    # rich is optional (Airflow brings it) and only drawn on a terminal; a plain log never loads it.
    from rich.table import Table

    table = Table(title=f"run {snapshot.run_id}" if snapshot.run_id else "starting the run...", expand=False)
    for column in ("task", "state", "time"):
        table.add_column(column, justify="right" if column == "time" else "left")
    for row in snapshot.tasks:
        table.add_row(row.task, row.state, duration(task_seconds(row, now)))
    for progress in snapshot.training:
        steps = f"{progress.step}/{progress.max_steps or '?'}"
        loss = f"{progress.loss:.4f}" if progress.loss is not None else "-"
        table.add_row(
            f"[bold]{progress.label}[/bold]",
            f"step {steps} loss {loss}",
            f"ETA {duration(eta_seconds(progress))}",
        )
    return table


class Display:
    """The live view on `terminal`: a rich Live table on a terminal where rich is installed, else a plain
    line per change."""

    def __init__(self, terminal: TextIO, rich: bool | None = None):
        self.terminal = terminal
        self.last = Snapshot()
        self.rich = terminal.isatty() and find_spec("rich") is not None if rich is None else rich
        self.live = None

    def __enter__(self) -> Display:
        if self.rich:
            # As in rich_table: loaded only to draw on a terminal.
            from rich.console import Console
            from rich.live import Live

            console = Console(file=self.terminal, force_terminal=True)
            # Airflow writes to fds 1 and 2, which go to the log file; Live must not take them over.
            table = rich_table(self.last, datetime.now(UTC))
            self.live = Live(
                table, console=console, auto_refresh=False, redirect_stdout=False, redirect_stderr=False
            )
            self.live.__enter__()
        return self

    def update(self, snapshot: Snapshot) -> None:
        now = datetime.now(UTC)
        if self.live is not None:
            self.live.update(rich_table(snapshot, now), refresh=True)
        else:
            for line in changes(self.last, snapshot, now):
                self.terminal.write(f"{now:%H:%M:%S} {line}\n")
            self.terminal.flush()
        self.last = snapshot

    def __exit__(self, *exc) -> None:
        if self.live is not None:
            self.live.__exit__(*exc)


@contextlib.contextmanager
def watching(poll: Callable[[], Snapshot], display: Display, every_s: float = POLL_S) -> Iterator[None]:
    """Poll in a thread and show each snapshot until the block ends, then show the last one."""
    stop = threading.Event()

    def loop() -> None:
        while not stop.wait(every_s):
            display.update(_safe(poll, display.last))

    thread = threading.Thread(target=loop, name="tunerflow-live-view", daemon=True)
    with display:
        thread.start()
        try:
            yield
        finally:
            stop.set()
            thread.join()
            display.update(_safe(poll, display.last))


def _safe(poll: Callable[[], Snapshot], last: Snapshot) -> Snapshot:
    """A poll that failed (the DB busy with a write, a file half-written) keeps the last view: the next
    poll, two seconds on, reads again. The view must never stop the run it watches."""
    try:
        return poll()
    except Exception as error:  # anything the run's DB or store raises mid-write
        print(f"live view: poll failed: {error!r}", file=sys.stderr)
        return last
