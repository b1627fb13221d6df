"""The evaluate step: which rows a job is scored on, and its score as deployed (`scoring.rank_on`)."""

from __future__ import annotations

import json

from tasks.contracts.evaluate import EvaluateSpec
from tasks.scoring.evaluation import evaluate
from tasks.storage import store


def _dataset(directory, name="tuna") -> dict:
    directory.mkdir(parents=True, exist_ok=True)
    rows = [
        {
            "id": f"test:{i}",
            "messages": [{"role": "user", "content": q}, {"role": "assistant", "content": "ONNX."}],
        }
        for i, q in enumerate(["Who are you?", "What do you do?", "What is your name?"])
    ]
    for split in ("train", "test"):
        (directory / f"{split}.jsonl").write_text("".join(json.dumps(row) + "\n" for row in rows))
    return {"name": name, "uri": store.to_uri(directory), "kind": "chat", "counts": {"train": 3, "test": 3}}


def _job(tmp_path, tiny_model_dir, **scoring) -> EvaluateSpec:
    return EvaluateSpec.model_validate(
        {
            "store_root": store.to_uri(tmp_path / "store"),
            "output": store.to_uri(tmp_path / "out"),
            "job_id": "j",
            "label": "tuna|tiny|a",
            "model": {"name": "tiny", "source": {"path": str(tiny_model_dir)}, "kind": "uri"},
            "dataset": _dataset(tmp_path / "data"),
            "scoring": {"metrics": ["rouge_l"], "primary": "rouge_l", "max_new_tokens": 4, **scoring},
            "export_config": {"int8_block_size": 32, "int8_mode": "dynamic"},
        }
    )


def test_a_job_is_scored_on_the_experiments_eval_set_when_there_is_one(tmp_path):
    job = _job(tmp_path, "/models/tiny")
    questions = {"name": "eval_questions", "uri": "file:///q", "kind": "chat"}
    assert EvaluateSpec.model_validate({**job.model_dump(), "eval_set": questions}).scored_on.name == (
        "eval_questions"
    )
    assert job.scored_on.name == "tuna"


def test_rank_on_int8_scores_the_jobs_own_int8_export_on_the_same_rows(tmp_path, tiny_model_dir):
    job = _job(tmp_path, tiny_model_dir, rank_on="onnx-int8")
    store.ensure_dir(job.output)
    result = evaluate(job).model_dump(mode="json")
    quantized = result["quantized"]
    assert quantized["format"] == "onnx-int8" and quantized["kept"] == "dynamic"
    assert set(quantized["metrics"]) == {"rouge_l"} and 0 <= quantized["metrics"]["rouge_l"] <= 1
    assert quantized["generation"]["generated_tokens"] > 0
    predicted = store.local_path(store.join(job.output, "predictions-onnx-int8.jsonl")).read_text()
    assert [json.loads(line)["id"] for line in predicted.splitlines()] == ["test:0", "test:1", "test:2"]
    # The scratch export is gone; only its scores and predictions stay.
    assert not [p for p in store.local_path(job.output).iterdir() if p.name.startswith(".quantized-")]


def test_reference_rows_and_pytorch_ranking_do_not_export(tmp_path, tiny_model_dir):
    job = _job(tmp_path, tiny_model_dir)
    store.ensure_dir(job.output)
    assert "quantized" not in evaluate(job).model_dump(mode="json")
    predicted = store.local_path(store.join(job.output, "predictions.jsonl")).read_text().splitlines()
    # Every answer carries its own score, the one the pages show beside it.
    assert all(0 <= json.loads(line)["scores"]["rouge_l"] <= 1 for line in predicted)


def test_evaluate_reads_its_model_and_rows_from_an_s3_store_and_commits_there(
    tmp_path, tiny_model_dir, s3_store_root, monkeypatch
):
    """Model, rows and output all in moto's S3: inputs are fetched (sha256-checked) into the local
    mirror, the predictions are uploaded with the manifest."""
    import shutil

    from tasks.runtime.step import execute

    job = _job(tmp_path, tiny_model_dir)
    model_uri = store.join(s3_store_root, "models", "tiny")
    shutil.copytree(tiny_model_dir, store.local_dir(model_uri), dirs_exist_ok=True)
    store.commit(model_uri, {"name": "tiny"})
    data_uri = store.join(s3_store_root, "datasets", "tuna")
    shutil.copytree(store.local_path(job.dataset.uri), store.local_dir(data_uri), dirs_exist_ok=True)
    store.commit(data_uri, {})
    shutil.rmtree(tmp_path / "cache")  # a fresh machine: everything comes from the bucket
    given = job.model_dump(mode="json")
    job = EvaluateSpec.model_validate(
        {
            **given,
            "store_root": s3_store_root,
            "output": store.join(s3_store_root, "jobs", "j", "evaluate"),
            "model": {**given["model"], "source": {"path": model_uri}},
            "dataset": {**given["dataset"], "uri": data_uri},
        }
    )
    result = execute("evaluate", evaluate, job)
    assert store.committed_result(job.output) == result and store.verify(job.output) == []
    monkeypatch.setenv("TUNERFLOW_CACHE_DIR", str(tmp_path / "reader"))
    predicted = store.fetch(store.join(job.output, "predictions.jsonl")).read_text()
    assert [json.loads(line)["id"] for line in predicted.splitlines()] == ["test:0", "test:1", "test:2"]
