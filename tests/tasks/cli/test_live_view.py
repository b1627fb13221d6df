"""The demo's live view: its lines and ETA on a sequence of polled states, the plain fallback off a
terminal, the training progress read from a real store, and Airflow's output kept in the log file."""

from __future__ import annotations

import io
import json
import logging
import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace

from tasks.cli import demo, live_poll
from tasks.cli.live_output import Display, output_to, watching
from tasks.cli.live_view import Snapshot, TaskRow, TrainingProgress, duration, eta_seconds, snapshot_lines
from tasks.config.catalog import resolve_hparams
from tasks.config.hparams import HParams
from tasks.contracts.planning import PlannedJob
from tasks.contracts.train import TrainSpec
from tasks.storage import layout, store

T0 = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
LABEL = "tuna|smollm2-135m-instruct|lr1e-3"
CHOICES = {"name": "live", "models": ["smollm2-135m-instruct"], "hparams": ["lora-fast"]}


def _at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


# Three polls of one run: planning, then the first job training, then it trained and evaluation started.
POLLS = [
    Snapshot(),
    Snapshot(
        run_id="manual__1",
        tasks=[
            TaskRow(task="validate_conf", state="success", started=_at(0), ended=_at(3)),
            TaskRow(task="train[0]", state="running", started=_at(5)),
            TaskRow(task="train[1]", state="scheduled"),
        ],
        training=[TrainingProgress(label=LABEL, step=8, max_steps=24, loss=2.2188, elapsed_s=80.0)],
    ),
    Snapshot(
        run_id="manual__1",
        tasks=[
            TaskRow(task="validate_conf", state="success", started=_at(0), ended=_at(3)),
            TaskRow(task="train[0]", state="success", started=_at(5), ended=_at(250)),
            TaskRow(task="train[1]", state="running", started=_at(251)),
        ],
    ),
]


def test_eta_is_the_steps_left_at_the_mean_pace_so_far():
    progress = POLLS[1].training[0]
    assert eta_seconds(progress) == 160.0  # 16 steps left at 10 s a step
    assert eta_seconds(progress.model_copy(update={"max_steps": None})) is None
    assert eta_seconds(progress.model_copy(update={"step": 0})) is None
    assert [duration(s) for s in (None, 42, 160, 3725)] == ["-", "42s", "2m40s", "1h02m"]


def test_the_view_has_one_line_per_task_and_the_training_job():
    lines = snapshot_lines(POLLS[1], now=_at(65))
    assert lines[0] == "run manual__1"
    assert lines[1].split() == ["validate_conf", "success", "3s"]
    assert lines[2].split() == ["train[0]", "running", "1m00s"]
    assert lines[3].split() == ["train[1]", "scheduled", "-"]
    assert lines[4] == f"training {LABEL}: step 8/24  loss 2.2188  ETA 2m40s"
    assert snapshot_lines(POLLS[0], now=T0) == ["waiting for Airflow to create the run..."]


def test_off_a_terminal_each_change_is_one_plain_line_and_nothing_is_redrawn():
    terminal = io.StringIO()
    display = Display(terminal)
    assert display.rich is False  # a StringIO, like a CI log, is not a terminal
    with display:
        for poll in POLLS:
            display.update(poll)
    lines = [line.split(" ", 1)[1] for line in terminal.getvalue().splitlines()]
    assert lines[0] == "run manual__1"
    assert [line.split()[:2] for line in lines[1:4]] == [
        ["validate_conf", "success"],
        ["train[0]", "running"],
        ["train[1]", "scheduled"],
    ]
    assert lines[4].startswith(f"training {LABEL}: step 8/24")
    # The third poll: only train[0] and train[1] changed; validate_conf is not repeated.
    assert [line.split()[:2] for line in lines[5:]] == [["train[0]", "success"], ["train[1]", "running"]]


def test_on_a_terminal_rich_draws_the_table():
    terminal = io.StringIO()
    with Display(terminal, rich=True) as display:
        display.update(POLLS[1])
    drawn = terminal.getvalue()
    assert "validate_conf" in drawn and "train[1]" in drawn and "step 8/24" in drawn and "ETA 2m40s" in drawn


def test_the_training_job_is_read_from_its_metrics_in_the_store(store_root):
    run_uri = layout.run(store_root, "demo", "manual__1")
    job_prefix = layout.job(run_uri, "j")
    spec = TrainSpec.model_validate(
        {
            "store_root": store_root,
            "job_id": "j",
            "label": LABEL,
            "output": layout.step(job_prefix, "train"),
            "dataset": {"name": "tuna", "kind": "chat", "uri": store.join(store_root, "datasets", "tuna")},
            "model": {"name": "smollm2", "source": {"path": "/models/smollm2"}, "kind": "uri"},
            "hparams": resolve_hparams(HParams(preset="lora-fast")).model_dump(),
            "training": {"type": "sft", "method": "lora"},
        }
    )
    spec_uri = store.join(job_prefix, "train.json")
    store.write_json(spec_uri, spec.model_dump(mode="json"))
    job = PlannedJob(
        job_id="j", label=LABEL, kind="train", train_spec=spec_uri, evaluate_spec="x", evaluate_argv=[]
    )
    store.write_json(store.join(run_uri, "jobs.json"), [job.model_dump(mode="json")])
    assert live_poll.training_now(run_uri) == []  # planned, not started
    records = [
        {"step": 2, "epoch": 0.06, "elapsed_s": 21.3, "loss": 4.32},
        {"step": 4, "epoch": 0.13, "elapsed_s": 42.6, "loss": 3.14},
        {"step": 4, "epoch": 0.13, "elapsed_s": 44.0, "eval_loss": 3.5},
    ]
    metrics = store.local_file(store.join(layout.step(job_prefix, "train"), "metrics.jsonl"))
    metrics.parent.mkdir(parents=True, exist_ok=True)
    # The last line is still being written: it is not a record yet.
    metrics.write_text("".join(json.dumps(r) + "\n" for r in records) + '{"step": 6, "ep')
    assert live_poll.training_now(run_uri) == [
        TrainingProgress(label=LABEL, step=4, max_steps=24, loss=3.14, elapsed_s=44.0)
    ]
    store.write_json(store.join(layout.step(job_prefix, "train"), "manifest.json"), {})
    assert live_poll.training_now(run_uri) == []  # trained


def test_without_max_steps_the_total_comes_from_the_epochs():
    hparams = resolve_hparams(HParams(preset="lora-default"))  # max_steps -1, 3 epochs
    spec = SimpleNamespace(hparams=hparams)
    assert live_poll.total_steps(spec, {"step": 10, "epoch": 0.5}) == 60
    assert live_poll.total_steps(spec, {"step": 0, "epoch": 0}) is None


def test_airflow_output_goes_to_the_log_file_and_the_view_to_the_terminal(tmp_path, capfd):
    log_path = tmp_path / "logs" / "demo.log"
    with output_to(log_path) as terminal:
        print("a task's print")
        logging.getLogger("airflow.task").warning("a task's log record")
        subprocess.run([sys.executable, "-c", "print('a step subprocess')"], check=True)
        os.write(2, b"stderr of the process\n")
        terminal.write("the live view\n")
    out, err = capfd.readouterr()
    logged = log_path.read_text()
    for text in ("a task's print", "a step subprocess", "stderr of the process"):
        assert text in logged and text not in out + err
    assert "the live view" in out and "the live view" not in logged


def test_the_demo_prints_the_log_path_first_and_ends_with_the_summary_and_ui(tmp_path, capfd, monkeypatch):
    class FakeDag:
        dag_id = "finetune_experiment"
        task_ids = ("validate_conf", "train")

        def test(self, run_conf):
            print("airflow: running the DAG")
            subprocess.run([sys.executable, "-c", "print('train step: step 2/24')"], check=True)
            return SimpleNamespace(run_id="manual__1", state="success")

    polled = Snapshot(run_id="manual__1", tasks=[TaskRow(task="validate_conf", state="success")])
    monkeypatch.setattr(demo, "load_dag", FakeDag)
    monkeypatch.setattr(demo, "ensure_airflow_db", lambda env: None)
    monkeypatch.setattr(live_poll, "newest_run_id", lambda dag_id: 0)
    monkeypatch.setattr(live_poll, "snapshot", lambda *args: polled)
    args = SimpleNamespace(home=str(tmp_path / "home"), store=None, conf=None)
    assert demo.cmd_demo(args) == 0
    out = capfd.readouterr().out
    first = out.splitlines()[0]
    assert first.startswith("Airflow's full log: ")
    log_path = first.removeprefix("Airflow's full log: ")
    with open(log_path) as handle:
        logged = handle.read()
    assert "airflow: running the DAG" in logged and "train step: step 2/24" in logged
    assert "airflow: running the DAG" not in out
    assert "validate_conf" in out  # the live view's line
    assert "Experiment run manual__1: success" in out
    store_root = (tmp_path / "home" / "store").resolve().as_uri()
    assert f"TUNERFLOW_STORE={store_root}" in out and "airflow standalone" in out
    assert "http://localhost:8080/tunerflow/experiments" in out


def test_a_failing_poll_keeps_the_last_view_and_never_stops_the_run():
    terminal = io.StringIO()
    calls = iter([POLLS[1]])

    def poll() -> Snapshot:
        return next(calls)  # StopIteration on the second call: a poll that fails

    with watching(poll, Display(terminal), every_s=0.01):
        pass
    assert "run manual__1" in terminal.getvalue()


def test_a_real_run_is_watched_from_airflows_db_in_graph_order(airflow_db, store_root, tmp_path, capfd):
    dag = demo.load_dag()
    order = list(dag.task_ids)
    before = live_poll.newest_run_id(dag.dag_id)
    assert live_poll.read_run(dag.dag_id, before, order) == (None, [])
    # A conf the schema accepts and validate_conf refuses: a real run of two tasks, in seconds.
    refused = [{"name": "tuna", "uri": "builtin:tuna_identity", "split": "90,20,0"}]
    result = demo.run_live({**CHOICES, "datasets": refused}, tmp_path / "demo.log", rich=False)
    run_id, rows = live_poll.read_run(dag.dag_id, before, order)
    assert run_id == result["run_id"]
    assert [row.task for row in rows] == sorted((row.task for row in rows), key=order.index)
    states = {row.task: row.state for row in rows}
    assert states["validate_conf"] == "failed" and states["report"] == "failed"
    assert rows[0].task == "validate_conf" and rows[0].started and rows[0].ended
    out = capfd.readouterr().out
    assert f"run {run_id}" in out
    assert any(line.split()[1:3] == ["validate_conf", "failed"] for line in out.splitlines())
    logged = (tmp_path / "demo.log").read_text()
    assert "split '90,20,0' sums to 110" in logged and "sums to 110" not in out
