from __future__ import annotations

import re

import pytest

from tasks.contracts.planning import RunInfo
from tasks.contracts.prepare import PlannedDataset, PreparedDataset
from tasks.pipeline.plan import RunCancelled, plan_jobs, plan_references, planned, validate_conf
from tasks.pipeline.selection import leaderboard
from tasks.storage import layout, store

CONF = {
    "name": "exp",
    "datasets": [
        {"name": "a", "uri": "builtin:tuna_identity"},
        {"name": "b", "uri": "builtin:tuna_identity"},
    ],
    "models": [{"name": "m1", "uri": "/models/m1"}, {"name": "m2", "uri": "/models/m2"}],
    "hparams": [{"preset": "lora-fast"}, {"preset": "lora-default"}, {"name": "x", "preset": "lora-fast"}],
}


@pytest.fixture
def run(store_root):
    datasets = validate_conf(CONF, "manual__2026-11-23T10:00:00+00:00", store_root)
    prepared = [PreparedDataset(name=d.name, uri=f"file:///prepared/{d.name}", kind="chat") for d in datasets]
    info = RunInfo(
        run_uri=layout.run(store_root, "exp", "manual__2026-11-23T10:00:00+00:00"), store_root=store_root
    )
    return info, datasets, prepared


def test_plan_is_the_cartesian_product_with_readable_labels_and_stored_specs(run):
    info, datasets, prepared = run
    assert [d.name for d in datasets] == ["a", "b"]
    assert datasets[0].argv[:4] == ["python", "-m", "tasks.prepare_dataset", "--job"]
    jobs = plan_jobs(info, prepared)
    assert len(jobs) == 2 * 2 * 3
    assert jobs[0].label == "a|m1|lora-fast"
    assert len({j.job_id for j in jobs}) == 12
    spec = store.read_json(jobs[0].train_spec)
    assert spec["output"] == layout.step(layout.job(info.run_uri, jobs[0].job_id), "train")
    assert spec["hparams"]["name"] == "lora-fast" and spec["model"]["source"]["path"] == "/models/m1"
    assert jobs[0].train_argv == ["python", "-m", "tasks.train", "--job", jobs[0].train_spec]
    references = plan_references(info, prepared)
    assert [r.label for r in references] == ["a|m1|base", "a|m2|base", "b|m1|base", "b|m2|base"]
    assert len(planned(info.run_uri)) == 16
    assert planned(info.run_uri) == jobs + references, "jobs.json and references.json read back as planned"


def test_run_keys_come_from_experiment_and_run_id_only(store_root):
    first = validate_conf(CONF, "manual__x", store_root)
    again = validate_conf(CONF, "manual__x", store_root)
    assert first == again


def test_a_run_cancelled_before_it_started_stops_at_validation_having_written_nothing(store_root):
    run_uri = layout.run(store_root, "exp", "ftjob-abc")
    store.write_json(layout.cancel_request(run_uri), {"cancelled_at": 1})
    with pytest.raises(RunCancelled, match="ftjob-abc was cancelled"):
        validate_conf(CONF, "ftjob-abc", store_root)
    assert not store.exists(layout.experiment_record(run_uri))


def _commit(prefix: str, result: dict) -> None:
    store.ensure_dir(prefix)
    store.commit(prefix, result)


def _fake_outcomes(info, jobs, outcomes):
    for job, outcome in zip(jobs, outcomes, strict=True):
        prefix = layout.job(info.run_uri, job.job_id)
        if outcome == "train_failed":
            store.write_json(
                store.join(prefix, "train", "error.json"), {"step": "train", "message": "CUDA OOM"}
            )
            continue
        if job.kind == "train":
            _commit(
                layout.step(prefix, "train"), {"adapter_uri": "file:///a", "model_uri": None, **outcome[1]}
            )
        _commit(layout.step(prefix, "evaluate"), {"metrics": outcome[0]})


def test_leaderboard_ranks_successes_lists_failures_with_reasons_and_breaks_ties(run):
    info, _, prepared = run
    jobs = plan_jobs(info, prepared)[:4]
    references = plan_references(info, prepared)[:1]
    _fake_outcomes(
        info,
        jobs + references,
        [
            ({"rouge_l": 0.5}, {"eval_loss": 1.2}),
            ({"rouge_l": 0.7}, {"eval_loss": 1.0}),
            "train_failed",
            ({"rouge_l": 0.7}, {"eval_loss": 0.9}),  # ties on rouge_l, wins on eval_loss
            ({"rouge_l": 0.1}, {}),
        ],
    )
    board = leaderboard(info.run_uri, jobs + references, "rouge_l").model_dump(mode="json")
    assert board["winner"]["label"] == jobs[3].label
    assert [r["rank"] for r in board["rows"] if "rank" in r] == [1, 2, 3]
    assert board["failed"] == [{"label": jobs[2].label, "error": "train: CUDA OOM"}]
    reference = next(r for r in board["rows"] if r["status"] == "reference")
    assert reference["metrics"] == {"rouge_l": 0.1}
    assert store.read_json(store.join(info.run_uri, "leaderboard.json"))["winner"]["label"] == jobs[3].label


def test_lower_is_better_metrics_are_minimised(run):
    info, _, prepared = run
    jobs = plan_jobs(info, prepared)[:2]
    _fake_outcomes(info, jobs, [({"eval_loss": 0.9}, {}), ({"eval_loss": 0.4}, {})])
    assert leaderboard(info.run_uri, jobs, "eval_loss").winner.label == jobs[1].label


def test_no_success_means_no_winner(run):
    info, _, prepared = run
    jobs = plan_jobs(info, prepared)[:2]
    _fake_outcomes(info, jobs, ["train_failed", "train_failed"])
    board = leaderboard(info.run_uri, jobs, "rouge_l")
    assert board.winner is None and len(board.failed) == 2


def test_a_dataset_the_training_type_cannot_learn_from_is_refused_before_any_job(run):
    from tasks.config.base import ConfError

    info, _, prepared = run
    prepared[1] = prepared[1].model_copy(update={"kind": "preference"})
    with pytest.raises(
        ConfError,
        match=re.escape("dataset 'b' holds preference rows, but training.type 'sft' trains on chat"),
    ):
        plan_jobs(info, prepared)


def test_prepare_specs_carry_the_tokenizers_and_the_shortest_sequence_length(store_root):
    validate_conf(CONF, "manual__t", store_root)
    spec = store.read_json(store.join(layout.run(store_root, "exp", "manual__t"), "datasets", "a.json"))
    assert [t["name"] for t in spec["tokenizers"]] == ["m1", "m2"]
    from tasks.config.catalog import hparam_presets

    shortest = min(hparam_presets()[p].get("max_seq_length", 1024) for p in ("lora-fast", "lora-default"))
    assert spec["dataset"]["max_tokens"] == shortest, "no row longer than a job's max_seq_length is kept"
    given = {**CONF, "datasets": [{"name": "a", "uri": "builtin:tuna_identity", "max_tokens": 64}]}
    validate_conf(given, "manual__u", store_root)
    spec = store.read_json(store.join(layout.run(store_root, "exp", "manual__u"), "datasets", "a.json"))
    assert spec["dataset"]["max_tokens"] == 64


def test_a_registered_dataset_is_prepared_under_its_name_and_jobs_keep_the_experiment_label(store_root):
    from tasks.config.base import ConfError
    from tasks.data import dataset_registry

    dataset_registry.create(
        store_root, {"name": "tickets", "uri": "builtin:tuna_identity", "split": "80,10,10"}
    )
    conf = {**CONF, "datasets": [{"name": "support", "registered": "tickets"}]}
    datasets = validate_conf(conf, "manual__r", store_root)
    run_uri = layout.run(store_root, "exp", "manual__r")
    spec = store.read_json(datasets[0].spec_uri)
    assert datasets[0].name == "support" and spec["dataset"]["name"] == "tickets"
    assert spec["dataset"]["split"] == "80,10,10" and spec["dataset"]["uri"] == "builtin:tuna_identity"
    prepared = [PreparedDataset(name="tickets", uri="file:///prepared/tickets", kind="chat")]
    jobs = plan_jobs(RunInfo(run_uri=run_uri, store_root=store_root), prepared)
    assert jobs[0].label.startswith("support|") and jobs[0].job_id.startswith("support--")
    missing = {**CONF, "datasets": [{"name": "support", "registered": "nope"}]}
    with pytest.raises(ConfError, match=r"datasets\.0\.registered: no registered dataset 'nope'"):
        validate_conf(missing, "manual__m", store_root)


def _prepared(datasets: list[PlannedDataset]) -> list[PreparedDataset]:
    return [
        PreparedDataset(name=d.name, uri=f"file:///prepared/{d.name}", kind="chat", counts={"test": 4})
        for d in datasets
    ]


def test_fixed_questions_become_every_jobs_eval_set_and_decontaminate_training(store_root):
    questions = [
        {"question": "Who made you?", "answer": "Tuna Labs."},
        {"question": "Hi?", "answer": "Hello."},
    ]
    conf = {**CONF, "scoring": {"eval_questions": questions}}
    run_id = "manual__q"
    datasets = validate_conf(conf, run_id, store_root)
    spec = store.read_json(datasets[0].spec_uri)
    assert spec["eval_prompts"] == [
        {"id": "eval_questions:0", "text": "who made you?"},
        {"id": "eval_questions:1", "text": "hi?"},
    ]
    info = RunInfo(run_uri=layout.run(store_root, "exp", run_id), store_root=store_root)
    jobs = plan_jobs(info, _prepared(datasets)) + plan_references(info, _prepared(datasets))
    for job in jobs:
        eval_set = store.read_json(job.evaluate_spec)["eval_set"]
        assert eval_set["name"] == "eval_questions" and eval_set["counts"] == {"test": 2}
    from tasks.scoring.evaluation import eval_rows

    split, rows = eval_rows(eval_set, None)
    assert split == "test" and rows[1]["messages"] == [
        {"role": "user", "content": "Hi?"},
        {"role": "assistant", "content": "Hello."},
    ]


def test_a_separate_eval_dataset_is_prepared_beside_the_others_and_scores_every_job(store_root):
    holdout = {"name": "holdout", "uri": "builtin:tuna_identity"}
    run_id = "manual__e"
    datasets = validate_conf({**CONF, "scoring": {"eval_dataset": holdout}}, run_id, store_root)
    xcom = [d.model_dump(mode="json") for d in datasets]
    assert [(d["name"], d.get("role")) for d in xcom] == [("a", None), ("b", None), ("holdout", "eval")]
    specs = [store.read_json(d.spec_uri) for d in datasets]
    assert specs[0]["eval_sets"] == [specs[2]["dataset"]] and "eval_sets" not in specs[2]
    assert specs[2]["role"] == "eval" and specs[2]["dataset"]["max_tokens"] is None
    info = RunInfo(run_uri=layout.run(store_root, "exp", run_id), store_root=store_root)
    jobs = plan_jobs(info, _prepared(datasets))
    assert len(jobs) == 2 * 2 * 3  # the eval set is not trained on
    assert {store.read_json(j.evaluate_spec)["eval_set"]["name"] for j in jobs} == {"holdout"}


@pytest.mark.parametrize(
    ("scoring", "message"),
    [
        (
            {
                "eval_dataset": {"name": "h", "uri": "x.jsonl"},
                "eval_questions": [{"question": "q", "answer": "a"}],
            },
            "give eval_dataset or eval_questions, not both",
        ),
        ({"eval_dataset": {"name": "a", "uri": "x.jsonl"}}, "also a training dataset's"),
        ({"eval_dataset": {"name": "h", "train_uri": "x.jsonl"}}, "give `uri` instead"),
        (
            {"metrics": ["eval_loss"], "primary": "eval_loss", "rank_on": "onnx-int8"},
            "needs a primary metric measured on generated answers",
        ),
    ],
)
def test_eval_set_and_ranking_rules_are_checked_with_the_conf(scoring, message, store_root):
    from tasks.config.base import ConfError

    with pytest.raises(ConfError, match=re.escape(message)):
        validate_conf({**CONF, "scoring": scoring}, "manual__x", store_root)


def test_ranking_on_the_int8_export_picks_the_best_deployable_job(run):
    info, _, prepared = run
    jobs = plan_jobs(info, prepared)[:4]
    scores = [  # (PyTorch rouge_l, INT8 rouge_l)
        (0.80, 0.40),  # best in PyTorch, loses the most to quantization
        (0.70, 0.65),  # ties on INT8 with the next, better in PyTorch: wins
        (0.60, 0.65),
        (0.90, None),  # its export was not scored: ranks last
    ]
    for job, (pytorch, int8) in zip(jobs, scores, strict=True):
        prefix = layout.job(info.run_uri, job.job_id)
        _commit(layout.step(prefix, "train"), {"adapter_uri": "file:///a", "model_uri": None})
        quantized = {"format": "onnx-int8", "metrics": {"rouge_l": int8} if int8 is not None else {}}
        _commit(layout.step(prefix, "evaluate"), {"metrics": {"rouge_l": pytorch}, "quantized": quantized})
    board = leaderboard(info.run_uri, jobs, "rouge_l", rank_on="onnx-int8")
    assert board.rank_on == "onnx-int8"
    assert [r.label for r in board.rows] == [jobs[i].label for i in (1, 2, 0, 3)]
    assert board.winner.quantized.metrics == {"rouge_l": 0.65}
    assert leaderboard(info.run_uri, jobs, "rouge_l").winner.label == jobs[3].label
