"""Per-row scores: each answer's own score on every text metric that can be scored on its row alone,
written beside the answer in predictions.jsonl; the judge and loss metrics are left out."""

from __future__ import annotations

import json

import pytest

from tasks.scoring.evaluation import write_predictions
from tasks.scoring.metrics import row_scores, score, scored_per_row
from tasks.storage import store

PREDICTIONS = ["the cat sat", "Apache License 2.0.", "no idea"]
REFERENCES = ["the cat sat on the mat", "Apache License 2.0.", "I am Tuna"]


def test_each_row_scores_alone_and_their_mean_is_the_metric():
    rows = row_scores(["exact_match", "rouge_l"], PREDICTIONS, REFERENCES)
    assert [row["exact_match"] for row in rows] == [0.0, 1.0, 0.0]
    assert rows[1]["rouge_l"] == 1.0 and rows[2]["rouge_l"] == 0.0 and 0 < rows[0]["rouge_l"] < 1
    overall = score(["rouge_l"], PREDICTIONS, REFERENCES)["rouge_l"]
    assert sum(row["rouge_l"] for row in rows) / 3 == pytest.approx(overall, abs=1e-6)


def test_the_judge_and_loss_metrics_get_no_per_row_score():
    assert not scored_per_row("llm_judge")  # one judge call per row is all it gets
    assert not scored_per_row("eval_loss")
    assert scored_per_row("rouge_l")
    rows = row_scores(["eval_loss", "llm_judge", "exact_match"], PREDICTIONS[:1], REFERENCES[:1])
    assert rows == [{"exact_match": 0.0}]


def test_predictions_carry_their_scores(tmp_path):
    rows = [
        {"id": f"q:{i}", "messages": [{"role": "user", "content": "?"}, {"role": "assistant", "content": r}]}
        for i, r in enumerate(REFERENCES)
    ]
    uri = store.to_uri(tmp_path / "out" / "predictions.jsonl")
    write_predictions(uri, rows, PREDICTIONS, ["exact_match", "eval_loss"])
    written = [json.loads(line) for line in store.local_path(uri).read_text().splitlines()]
    assert [w["id"] for w in written] == ["q:0", "q:1", "q:2"]
    assert [w["scores"] for w in written] == [
        {"exact_match": 0.0},
        {"exact_match": 1.0},
        {"exact_match": 0.0},
    ]
    assert written[1]["prediction"] == "Apache License 2.0." and written[2]["reference"] == "I am Tuna"
