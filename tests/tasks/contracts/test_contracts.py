"""The typed contracts: specs and results written by an earlier version load and dump back to the same
JSON, a bad spec is refused naming its field and what to do, and results round-trip."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tasks.config.catalog import resolve_hparams
from tasks.config.hparams import HParams, ResolvedHParams
from tasks.contracts.base import ContractError
from tasks.contracts.evaluate import EvaluateResult, EvaluateSpec
from tasks.contracts.export import CheckExportSpec, ExportSpec
from tasks.contracts.planning import ChampionPlan, PlannedJob
from tasks.contracts.prepare import PreparedDataset, PrepareSpec
from tasks.contracts.promotion import PromotionDecision
from tasks.contracts.selection import Leaderboard
from tasks.contracts.train import CheckpointsInfo, TrainResult, TrainSpec
from tasks.data.preparation import complete_job
from tasks.runtime.errors import StepError
from tasks.runtime.step import execute, load_job
from tasks.storage import store
from tasks.training import checkpoints

EARLIER = Path(__file__).resolve().parents[2] / "fixtures" / "earlier_version"
REPO = Path(__file__).resolve().parents[3]


def _read(name: str):
    return json.loads((EARLIER / name).read_text())


@pytest.mark.parametrize(
    ("name", "model"),
    [
        ("prepare_spec.json", PrepareSpec),
        ("train_spec.json", TrainSpec),
        ("evaluate_spec.json", EvaluateSpec),
        ("evaluate_spec_reference.json", EvaluateSpec),
        ("export_spec.json", ExportSpec),
        ("check_export_spec.json", CheckExportSpec),
        ("train_result.json", TrainResult),
        ("evaluate_result.json", EvaluateResult),
        ("leaderboard.json", Leaderboard),
    ],
)
def test_a_file_written_by_an_earlier_version_loads_and_dumps_back_unchanged(name, model):
    stored = _read(name)
    assert model.load(stored, name).model_dump(mode="json") == stored


def test_planned_jobs_written_by_an_earlier_version_load_with_their_argv():
    for entry in _read("jobs.json") + _read("references.json"):
        job = PlannedJob.load(entry, "jobs.json")
        assert job.model_dump(mode="json") == entry
        assert job.evaluate_argv[:3] == ["python", "-m", "tasks.evaluate"]


def test_the_typed_spec_reads_what_the_step_needs():
    train = TrainSpec.load(_read("train_spec.json"), "train.json")
    assert train.hparams.learning_rate == 0.001 and train.training.method == "lora"
    assert train.dataset.counts["test"] == 29 and train.model.source.gguf is not None
    reference = EvaluateSpec.load(_read("evaluate_spec_reference.json"), "evaluate.json")
    assert reference.reference and reference.train_output is None and reference.scored_on.name == "tuna"


def test_a_spec_with_a_bad_or_missing_field_is_refused_naming_it_and_saying_what_to_do(tmp_path):
    spec = _read("train_spec.json")
    spec["hparams"]["learning_rate"] = "fast"
    del spec["output"]
    path = tmp_path / "train.json"
    path.write_text(json.dumps(spec))
    with pytest.raises(StepError) as refused:
        load_job(str(path), TrainSpec)
    message = str(refused.value)
    assert f"{path} is not a valid TrainSpec" in message
    assert "hparams.learning_rate: Input should be a valid number" in message
    assert "output: Field required" in message
    assert "trigger the run again" in message


def test_an_unknown_field_is_refused_rather_than_ignored():
    spec = {**_read("evaluate_spec.json"), "train_outptu": "file:///x"}
    with pytest.raises(ContractError, match="train_outptu: Extra inputs are not permitted"):
        EvaluateSpec.load(spec, "evaluate.json")


def test_the_step_command_refuses_a_bad_spec_with_a_readable_message(tmp_path):
    spec = {**_read("evaluate_spec_reference.json"), "scoring": {"metrics": []}}
    path = tmp_path / "evaluate.json"
    path.write_text(json.dumps(spec))
    done = subprocess.run(
        [sys.executable, "-m", "tasks.evaluate", "--job", str(path)], capture_output=True, text=True, cwd=REPO
    )
    assert done.returncode == 1 and "scoring.metrics:" in done.stderr and "Traceback" not in done.stderr


def test_results_round_trip_and_optional_fields_stay_out_of_the_json():
    result = TrainResult(
        job_id="j",
        label="d|m|h",
        method="lora",
        adapter_uri="file:///a",
        model_uri=None,
        checkpoints=CheckpointsInfo(uri="file:///c", steps=[2], save_steps=2),
    )
    dumped = result.model_dump(mode="json")
    assert "merged_uri" not in dumped and dumped["model_uri"] is None
    assert TrainResult.model_validate(dumped) == result
    decision = PromotionDecision(promoted=False, reason="promotion.enabled is false")
    assert decision.model_dump(mode="json") == {"promoted": False, "reason": "promotion.enabled is false"}
    skipped = ChampionPlan(skip="no champion")
    assert ChampionPlan.model_validate(skipped.model_dump(mode="json")) == skipped


def test_a_champion_plan_is_planned_or_skipped_not_both():
    with pytest.raises(ValueError, match="spec_uri, argv and version, or a skip reason alone"):
        ChampionPlan(skip="x", spec_uri="file:///s", argv=["python"], version=1)


def test_execute_checks_a_result_against_its_model_before_committing(tmp_path):
    spec = TrainSpec.load(_read("train_spec.json"), "train.json").model_copy(
        update={"output": (tmp_path / "out").as_uri()}
    )
    with pytest.raises(
        StepError, match="train's result is not a valid TrainResult:\nadapter_uri: Field required"
    ):
        execute("train", lambda job: {"model_uri": None}, spec, TrainResult)
    assert "adapter_uri: Field required" in store.read_json(store.join(spec.output, "error.json"))["message"]
    committed = execute(
        "train", lambda job: TrainResult(adapter_uri="file:///a", model_uri=None), spec, TrainResult
    )
    assert committed == {"adapter_uri": "file:///a", "model_uri": None}


def test_a_train_spec_stored_before_a_hyperparameter_existed_keys_the_same_checkpoints():
    """A hyperparameter added since (neftune_noise_alpha) loads at its default but is not written back, so
    a retry after the upgrade finds the checkpoints its earlier tries committed; the planner, which
    resolves every hyperparameter, still writes them all."""
    stored = _read("train_spec.json")
    assert "neftune_noise_alpha" not in stored["hparams"]
    spec = TrainSpec.load(stored, "train.json")
    assert spec.hparams.neftune_noise_alpha is None
    assert checkpoints.fingerprint(spec.model_dump(mode="json")) == checkpoints.fingerprint(stored)
    planned = spec.model_copy(update={"hparams": resolve_hparams(HParams(name="lr1e-3"))})
    assert set(planned.model_dump(mode="json")["hparams"]) == set(ResolvedHParams.model_fields)


def test_a_stored_prepare_spec_names_the_version_it_always_did_and_runs_through_the_step(tmp_path):
    """The earlier version prepared this spec as datasets/tuna/1c5e58a55bf1d1f6, the dataset its export spec
    names. Moved to a fresh store (and without SmolLM2's tokenizer, whose GGUF would be converted first),
    `python -m tasks.prepare_dataset --job <uri>` prepares it to the same splits."""
    stored = _read("prepare_spec.json")
    earlier = _read("export_spec.json")["dataset"]
    assert complete_job(PrepareSpec.load(stored, "prepare_spec.json")).version == earlier["version"]
    spec_uri = store.join(tmp_path.as_uri(), "datasets", "tuna.json")
    store.write_json(spec_uri, {**stored, "store_root": tmp_path.as_uri(), "tokenizers": []})
    done = subprocess.run(
        [sys.executable, "-m", "tasks.prepare_dataset", "--job", spec_uri],
        capture_output=True,
        text=True,
        cwd=REPO,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    result = PreparedDataset.load(json.loads(done.stdout.strip().splitlines()[-1]), "the step's result")
    assert result.counts == earlier["counts"] and result.kind == earlier["kind"] and result.dropped == 0
    assert store.committed_result(result.uri) == result.model_dump(mode="json")
