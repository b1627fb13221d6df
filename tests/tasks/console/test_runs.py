"""The run page's view model: leaderboard order and failures, task links, curves, answers aligned by
row id across base model, jobs and champion with their scores, pages of questions, and lookups."""

from __future__ import annotations

import pytest

from tasks.console.lookup import find_job, find_run
from tasks.console.runs import NotFound, run_page
from tasks.storage import layout, store
from tests.fixtures.console_store import FakeJob, FakeRun, answer, build_run

OOM = "train: CUDA out of memory"
RUN = FakeRun(jobs=[FakeJob("lr1e-3", 0.8), FakeJob("lr2e-4", 0.4), FakeJob("broken", error=OOM)])


@pytest.fixture
def root(tmp_path) -> str:
    root = store.to_uri(tmp_path / "store")
    build_run(root, RUN)
    return root


def _page(root: str, **kwargs):
    return run_page(root, RUN.experiment, store.slug(RUN.run_id), **kwargs)


def test_the_leaderboard_ranks_the_winner_first_and_lists_failures_with_their_reasons(root):
    page = _page(root)
    assert [(r.label.split("|")[-1], r.status, r.rank) for r in page.rows] == [
        ("lr1e-3", "succeeded", 1),
        ("lr2e-4", "succeeded", 2),
        ("base", "reference", None),
        ("broken", "failed", None),
    ]
    assert [r.winner for r in page.rows] == [True, False, False, False]
    assert page.winner == "qa|tiny|lr1e-3" and page.primary == "rouge_l"
    assert page.rows[3].error == OOM
    assert page.metric_names == ["rouge_l", "exact_match"]
    assert page.state == "finished" and page.run_id == RUN.run_id
    assert page.promotion.promoted and page.exports_passed and page.exports[0]["format"] == "onnx"


def test_each_job_links_to_its_mapped_tasks_in_airflows_grid_at_its_planned_position(root):
    rows = {r.label.split("|")[-1]: r for r in _page(root).rows}
    run = "manual__2026-01-02T03%3A04%3A05%2B00%3A00"
    assert [link.path for link in rows["lr2e-4"].logs] == [
        f"/dags/finetune_experiment/runs/{run}/tasks/train/mapped/1",
        f"/dags/finetune_experiment/runs/{run}/tasks/evaluate/mapped/1",
    ]
    assert [(link.task_id, link.map_index) for link in rows["broken"].logs] == [("train", 2), ("evaluate", 2)]
    assert [(link.task_id, link.map_index) for link in rows["base"].logs] == [("score_base", 0)]


def test_every_trained_jobs_train_and_eval_loss_share_one_chart(root):
    page = _page(root)
    labels = [(s.label, s.dashed) for s in page.loss_chart.series]
    assert ("qa|tiny|lr1e-3 train", False) in labels and ("qa|tiny|lr1e-3 eval", True) in labels
    assert len(labels) == 6  # three trained jobs (the failed one trained), train and eval each
    assert page.loss_chart.series[0].points[0] == (1, 3.0)
    assert page.metric_chart.labels == ["qa|tiny|lr1e-3", "qa|tiny|lr2e-4", "qa|tiny|base"]
    assert page.metric_chart.series[0].values == [0.8, 0.4, 0.1]


def test_answers_are_aligned_by_row_id_across_base_jobs_and_champion_with_scores(root):
    answers = _page(root).answers
    assert [(c.label, c.kind, c.winner) for c in answers.columns] == [
        ("qa|tiny|base", "reference", False),
        ("qa|tiny|lr1e-3", "job", True),
        ("qa|tiny|lr2e-4", "job", False),
        ("demo v1 (champion)", "champion", False),
    ]
    second = answers.questions[1]
    assert (second.id, second.question, second.reference) == ("qa.jsonl:1", "What license?", "Apache 2.0.")
    assert [a.text for a in second.answers] == [
        answer(job, 1, "Apache 2.0.")
        for job in ("qa--tiny--base", "qa--tiny--lr1e-3", "qa--tiny--lr2e-4", "champion")
    ]
    assert second.answers[1].scores == {"rouge_l": 0.25, "exact_match": 0.0}
    assert answers.questions[0].answers[3].scores == {"rouge_l": 1.0, "exact_match": 1.0}


def test_a_predictions_file_in_another_order_or_without_scores_is_still_aligned(tmp_path):
    root = store.to_uri(tmp_path / "store")
    prefix = build_run(root, FakeRun(jobs=[FakeJob("old", 0.7, row_scores=False)], champion_version=None))
    uri = store.join(layout.job(prefix, "qa--tiny--base"), "evaluate", "predictions.jsonl")
    lines = store.local_path(uri).read_text().splitlines()
    store.local_path(uri).write_text("\n".join(reversed(lines)) + "\n")
    first = run_page(root, "demo", store.slug(FakeRun().run_id)).answers.questions[0]
    assert first.id == "qa.jsonl:0"
    assert [a.text for a in first.answers] == ["I am Tuna.", "I am Tuna."]
    assert [a.scores for a in first.answers] == [{"rouge_l": 1.0, "exact_match": 1.0}, {}]


def test_answers_come_a_page_of_questions_at_a_time(tmp_path):
    root = store.to_uri(tmp_path / "store")
    questions = [(f"question {i}", f"reference {i}") for i in range(45)]
    build_run(root, FakeRun(questions=questions))
    page = run_page(root, "demo", store.slug(FakeRun().run_id), page=3).answers
    assert (page.page, page.pages, page.total) == (3, 3, 45)
    assert [q.question for q in page.questions] == [f"question {i}" for i in range(40, 45)]
    assert run_page(root, "demo", store.slug(FakeRun().run_id), page=99).answers.page == 3


def test_a_run_without_a_leaderboard_lists_its_planned_jobs_as_pending(tmp_path):
    root = store.to_uri(tmp_path / "store")
    build_run(root, FakeRun(finished=False))
    page = run_page(root, "demo", store.slug(FakeRun().run_id), states=lambda ids: {ids[0]: "running"})
    assert {r.status for r in page.rows} == {"pending"} and len(page.rows) == 3
    assert page.state == "running" and page.answers.total == 0 and page.promotion is None


def test_unknown_or_unsafe_names_are_not_found(root):
    for experiment, run in (("demo", "nope"), ("..", "x"), ("demo", "..")):
        with pytest.raises(NotFound):
            run_page(root, experiment, run)


def test_airflows_run_and_task_instance_find_their_run_and_job(root):
    assert find_run(root, RUN.run_id) == ("demo", store.slug(RUN.run_id))
    assert find_run(root, "manual__never") is None
    slug = store.slug(RUN.run_id)
    assert find_job(root, "demo", slug, "evaluate", 1) == "qa--tiny--lr2e-4"
    assert find_job(root, "demo", slug, "score_base", 0) == "qa--tiny--base"
    assert find_job(root, "demo", slug, "train", 7) is None
    assert find_job(root, "demo", slug, "report", -1) is None


def test_the_run_page_reads_an_s3_store_as_a_file_store(s3_store_root):
    build_run(s3_store_root, RUN)
    page = run_page(s3_store_root, RUN.experiment, store.slug(RUN.run_id))
    assert page.winner == "qa|tiny|lr1e-3" and len(page.loss_chart.series) == 6
    assert [a.text for a in page.answers.questions[0].answers] == ["I am Tuna."] * 4
    assert page.answers.questions[1].question == "What license?"


def _rewrite_board(root: str, change) -> None:
    """The run's leaderboard.json changed as a search, a merge or a priced deployment would write it."""
    from tasks.contracts.selection import Leaderboard

    uri = store.join(layout.run(root, RUN.experiment, RUN.run_id), "leaderboard.json")
    board = Leaderboard.model_validate(store.read_json(uri))
    change(board)
    store.write_json(uri, board.model_dump(mode="json"))


def test_pruned_trials_merged_candidates_and_costs_are_on_the_leaderboard(root):
    def change(board):
        rows = {row.label.split("|")[-1]: row for row in board.rows}
        rows["lr2e-4"].status, rows["lr2e-4"].rank = "pruned", None
        rows["lr2e-4"].stopped, rows["lr2e-4"].round = "stopped by halving at step 8", 1
        rows["lr1e-3"].kind, rows["lr1e-3"].merge_method = "merge", "ties"
        rows["lr1e-3"].parts = ["qa|tiny|a", "qa|tiny|b"]
        for row, hours in ((rows["lr1e-3"], 0.5), (rows["lr2e-4"], 0.25)):
            row.device_hours, row.cost = hours, hours * 2
        board.device_hours, board.cost, board.currency = 0.75, 1.5, "EUR"
        board.search = "halving over 8 trials in 2 rounds"

    _rewrite_board(root, change)
    page = _page(root)
    rows = {r.label.split("|")[-1]: r for r in page.rows}
    assert (rows["lr2e-4"].status, rows["lr2e-4"].stopped, rows["lr2e-4"].round) == (
        "pruned",
        "stopped by halving at step 8",
        1,
    )
    assert (rows["lr1e-3"].kind, rows["lr1e-3"].parts, rows["lr1e-3"].merge_method) == (
        "merge",
        ["qa|tiny|a", "qa|tiny|b"],
        "ties",
    )
    assert (rows["lr1e-3"].device_hours, rows["lr1e-3"].cost) == (0.5, 1.0)
    assert (page.device_hours, page.cost, page.currency) == (0.75, 1.5, "EUR")
    assert page.search == "halving over 8 trials in 2 rounds"
    # A pruned trial was never scored on the test split: it has no answers column.
    assert "qa|tiny|lr2e-4" not in [column.label for column in page.answers.columns]
