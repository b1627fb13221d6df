"""The experiments, run and job pages through the app: what they show, the winner marked, text from
confs, job names, questions and answers escaped, TensorBoard downloads, and where Airflow's links on a
run and a task instance land."""

from __future__ import annotations

import pytest

from plugins.tunerflow_ui import airflow_runs
from tasks.storage import store
from tests.fixtures.console_store import FakeJob, FakeRun, build_run

SCRIPT = "<script>alert(1)</script>"
IMG = "<img src=x onerror=alert(2)>"
HOSTILE = FakeRun(
    description=f"about {SCRIPT}",
    jobs=[FakeJob(f"lr{SCRIPT}", 0.9), FakeJob("plain", 0.2)],
    questions=[(f"what is {IMG}?", "fine"), (f"and {SCRIPT}?", "also fine")],
)
RUN_URL = f"/experiments/demo/runs/{store.slug(HOSTILE.run_id)}"


@pytest.fixture
def pages(ui_client, tmp_path):
    """A client on a store holding HOSTILE, with Airflow's run states given by the test."""
    root = store.to_uri(tmp_path / "store")
    build_run(root, HOSTILE)

    def make(states: dict[str, str] | None = None):
        client = ui_client(root)
        given = states or {}
        client.app.dependency_overrides[airflow_runs.run_states] = lambda: (
            lambda run_ids: {r: given[r] for r in run_ids if r in given}
        )
        return client

    return make


def _escaped(html: str) -> None:
    for raw in (SCRIPT, IMG):
        assert raw not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html


def test_experiments_page_lists_runs_with_airflows_state(pages):
    html = pages({HOSTILE.run_id: "running"}).get("/experiments").text
    assert 'id="demo"' in html and HOSTILE.run_id in html
    assert '<span class="badge running">running</span>' in html
    assert f'href="/tunerflow{RUN_URL}"' in html
    _escaped(html)


def test_run_page_marks_the_winner_and_shows_answers_exports_and_promotion(pages):
    response = pages().get(RUN_URL)
    assert response.status_code == 200
    html = response.text
    winner = html.index('<tr class="winner">')
    assert html.index("qa|tiny|lr&lt;script&gt;", winner) < html.index('<span class="badge winner">', winner)
    assert "Answers side by side" in html and "demo v1 (champion)" in html
    assert "rouge_l 0.25 · exact_match 0" in html  # an answer's own scores
    assert "&lt;img src=x onerror=alert(2)&gt;" in html  # the question
    assert "beats the champion" in html and "onnx" in html
    assert (
        "/dags/finetune_experiment/runs/manual__2026-01-02T03%3A04%3A05%2B00%3A00/tasks/train/mapped/0"
        in html
    )
    assert 'data-chart="loss-data"' in html and 'data-chart="metric-data"' in html
    _escaped(html)


def test_job_page_shows_hyperparameters_checkpoints_answers_and_tensorboard(pages):
    client = pages()
    job = f"{RUN_URL}/jobs/{store.slug('qa--tiny--lr' + SCRIPT)}"
    html = client.get(job).text
    assert "lora_r" in html and "Checkpoints" in html and "tensorboard --logdir" in html
    assert 'data-chart="curve-1-data"' in html
    _escaped(html)  # the job's name in its label, its answers holding the name
    download = client.get(f"{job}/tensorboard/events.out.tfevents.1.host")
    assert download.status_code == 200 and download.content == b"\x00tensorboard-events"
    assert "attachment" in download.headers["content-disposition"]
    assert client.get(f"{job}/tensorboard/manifest.json").status_code == 404


def test_unknown_runs_and_jobs_are_404(pages):
    client = pages()
    assert client.get("/experiments/demo/runs/nope").status_code == 404
    assert client.get(f"{RUN_URL}/jobs/nope").status_code == 404


def test_airflows_run_link_lands_on_the_run_page_or_says_why_not(pages):
    client = pages()
    landed = client.get(f"/airflow/runs/finetune_experiment/{HOSTILE.run_id}", follow_redirects=False)
    assert landed.status_code == 307 and landed.headers["location"] == f"/tunerflow{RUN_URL}"
    compared = client.get("/airflow/runs/compare_models/manual__x", follow_redirects=False)
    assert compared.headers["location"] == "/tunerflow/compare/runs/manual__x"
    other = client.get("/airflow/runs/some_dag/manual__x")
    assert other.status_code == 404 and "has no tunerflow page" in other.text
    unknown = client.get("/airflow/runs/finetune_experiment/manual__never")
    assert unknown.status_code == 404 and "no files in the artifact store" in unknown.text


def test_airflows_task_instance_link_lands_on_the_job_page_or_says_which_tasks_have_one(pages):
    client = pages()
    base = f"/airflow/task-instances/finetune_experiment/{HOSTILE.run_id}"
    landed = client.get(f"{base}/evaluate/1", follow_redirects=False)
    assert (
        landed.status_code == 307
        and landed.headers["location"] == f"/tunerflow{RUN_URL}/jobs/qa--tiny--plain"
    )
    reference = client.get(f"{base}/score_base/0", follow_redirects=False)
    assert reference.headers["location"].endswith("/jobs/qa--tiny--base")
    other = client.get(f"{base}/report/-1")
    assert other.status_code == 404 and "train[i], evaluate[i], score_base[i]" in other.text
    assert f'href="/tunerflow{RUN_URL}"' in other.text


def test_run_page_shows_pruned_trials_merges_and_costs_escaped(pages, tmp_path):
    from tasks.contracts.selection import Leaderboard
    from tasks.storage import layout

    uri = store.join(layout.run(store.to_uri(tmp_path / "store"), "demo", HOSTILE.run_id), "leaderboard.json")
    board = Leaderboard.model_validate(store.read_json(uri))
    pruned = next(row for row in board.rows if row.label.endswith("plain"))
    pruned.status, pruned.rank, pruned.stopped = "pruned", None, f"stopped by halving at step 8 {SCRIPT}"
    winner = board.rows[0]
    winner.parts, winner.merge_method = [f"qa|tiny|{SCRIPT}", "qa|tiny|b"], "ties"
    winner.device_hours, winner.cost = 0.5, 1.25
    board.device_hours, board.cost, board.currency = 0.5, 1.25, "EUR"
    store.write_json(uri, board.model_dump(mode="json"))
    html = pages().get(RUN_URL).text
    assert '<tr class="pruned">' in html and "stopped by halving at step 8" in html
    assert "merged (ties) from qa|tiny|&lt;script&gt;" in html
    assert "Training used 0.5 device-hours, 1.25 EUR." in html and "Cost (EUR)" in html
    _escaped(html)
