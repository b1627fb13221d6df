"""Which checkpoint a retried training resumes from, and which ones are kept. No model needed."""

from __future__ import annotations

import json
from pathlib import Path

from tasks.storage import store
from tasks.training import checkpoints

FINGERPRINT = "f" * 64


def _checkpoint(root: Path, step: int, commit: bool = True, fingerprint: str = FINGERPRINT) -> Path:
    """A directory shaped like what the Trainer writes, committed the way the train step does."""
    directory = root / f"checkpoint-{step}"
    directory.mkdir(parents=True)
    (directory / "adapter_model.safetensors").write_bytes(f"weights at {step}".encode())
    (directory / "trainer_state.json").write_text(json.dumps({"global_step": step}))
    if commit:
        checkpoints.commit(directory, {"step": step, "fingerprint": fingerprint, "elapsed_s": float(step)})
    return directory


def _job(output: str, **hparams) -> dict:
    return {
        "output": output,
        "model": {"name": "tiny", "source": {"path": "/m"}},
        "dataset": {"name": "d", "kind": "chat", "uri": "file:///data/v1"},
        "training": {"type": "sft", "method": "lora"},
        "hparams": {"name": "a", "learning_rate": 1e-3, "logging_steps": 1, "save_steps": 3, **hparams},
    }


def test_checkpoints_live_beside_the_train_output_so_a_retry_reset_keeps_them():
    job = _job("file:///store/experiments/e/runs/r/jobs/j/train")
    assert checkpoints.checkpoints_uri(job) == "file:///store/experiments/e/runs/r/jobs/j/checkpoints"
    assert checkpoints.checkpoints_uri({**job, "checkpoints": "file:///elsewhere"}) == "file:///elsewhere"


def test_a_commit_lists_every_file_with_its_sha256(tmp_path):
    directory = _checkpoint(tmp_path, 3)
    manifest = store.read_json(store.to_uri(directory / "manifest.json"))
    assert set(manifest["files"]) == {"adapter_model.safetensors", "trainer_state.json"}
    digest = store.sha256_file(directory / "adapter_model.safetensors")
    assert manifest["files"]["adapter_model.safetensors"]["sha256"] == digest
    assert manifest["result"]["step"] == 3


def test_resume_picks_the_newest_committed_checkpoint(tmp_path):
    for step in (3, 6, 9):
        _checkpoint(tmp_path, step)
    path, info = checkpoints.resumable(tmp_path, FINGERPRINT)
    assert path == tmp_path / "checkpoint-9" and info["step"] == 9 and info["elapsed_s"] == 9.0
    assert [step for step, _ in checkpoints.committed(tmp_path)] == [3, 6, 9]


def test_a_checkpoint_without_manifest_is_ignored_and_removed(tmp_path):
    _checkpoint(tmp_path, 3)
    _checkpoint(tmp_path, 6, commit=False)  # the process died while the Trainer was writing it
    path, info = checkpoints.resumable(tmp_path, FINGERPRINT)
    assert info["step"] == 3 and path.name == "checkpoint-3"
    assert not (tmp_path / "checkpoint-6").exists()


def test_a_checkpoint_whose_file_no_longer_matches_its_sha256_is_ignored(tmp_path):
    _checkpoint(tmp_path, 3)
    changed = _checkpoint(tmp_path, 6)
    (changed / "adapter_model.safetensors").write_bytes(b"truncated")
    assert "adapter_model.safetensors" in checkpoints.problem(changed, FINGERPRINT)
    _path, info = checkpoints.resumable(tmp_path, FINGERPRINT)
    assert info["step"] == 3 and not changed.exists()


def test_a_checkpoint_of_another_recipe_is_not_resumed(tmp_path):
    _checkpoint(tmp_path, 3, fingerprint="0" * 64)
    assert checkpoints.resumable(tmp_path, FINGERPRINT) is None
    assert not (tmp_path / "checkpoint-3").exists()


def test_nothing_to_resume_means_a_fresh_start(tmp_path):
    assert checkpoints.resumable(tmp_path / "missing", FINGERPRINT) is None
    (tmp_path / "README.md").write_text("the Trainer's model card")
    (tmp_path / "runs").mkdir()
    assert checkpoints.resumable(tmp_path, FINGERPRINT) is None
    assert (tmp_path / "README.md").exists() and (tmp_path / "runs").exists()


def test_prune_keeps_the_newest_committed_and_never_counts_a_half_written_one(tmp_path):
    for step in (2, 4, 6):
        _checkpoint(tmp_path, step)
    _checkpoint(tmp_path, 3, commit=False)  # a leftover of a killed save, older than the newest commit
    _checkpoint(tmp_path, 8, commit=False)  # newer but uncommitted: must not push out 4 or 6
    removed = checkpoints.prune(tmp_path, keep=2)
    assert removed == [2, 3]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint-4", "checkpoint-6", "checkpoint-8"]
    assert [step for step, _ in checkpoints.committed(tmp_path)] == [4, 6]


def test_prune_never_deletes_a_protected_checkpoint_the_best_one_of_early_stopping(tmp_path):
    for step in (2, 4, 6, 8):
        _checkpoint(tmp_path, step)
    assert checkpoints.prune(tmp_path, keep=1, protect={4}) == [2, 6]
    assert [step for step, _ in checkpoints.committed(tmp_path)] == [4, 8]
    # Once no longer protected (a newer best), it goes like any other.
    assert checkpoints.prune(tmp_path, keep=1, protect={8}) == [4]


def test_the_newest_checkpoint_a_later_halving_round_resumes_from_is_kept_and_resumed(tmp_path):
    for step in (2, 3):  # save_steps 2, then halving's stop at step 3
        _checkpoint(tmp_path, step)
    assert checkpoints.prune(tmp_path, keep=1) == [2]
    path, info = checkpoints.resumable(tmp_path, FINGERPRINT)
    assert path.name == "checkpoint-3" and info["step"] == 3


def test_the_fingerprint_ignores_when_training_stops():
    """Halving's stop_at_step (a spec field) and the time limit: a later round, or a retry with a longer
    limit, resumes the same checkpoints."""
    job = _job("file:///o/train")
    assert checkpoints.fingerprint(job) == checkpoints.fingerprint(
        {**_job("file:///o/train", max_train_minutes=5.0), "stop_at_step": 8, "checkpoints": "file:///c"}
    )


def test_the_fingerprint_ignores_how_often_things_are_written_but_not_what_is_learned():
    job = _job("file:///o/train")
    assert checkpoints.fingerprint(job) == checkpoints.fingerprint(
        _job("file:///o/train", logging_steps=5, save_steps=10, save_total_limit=1, merge_adapter=True)
    )
    assert checkpoints.fingerprint(job) != checkpoints.fingerprint(
        _job("file:///o/train", learning_rate=2e-3)
    )
    other_data = {**job, "dataset": {**job["dataset"], "uri": "file:///data/v2"}}
    assert checkpoints.fingerprint(job) != checkpoints.fingerprint(other_data)


def test_logs_snapshotted_into_a_checkpoint_are_restored_as_of_its_step(tmp_path):
    out = tmp_path / "train"
    (out / "tensorboard").mkdir(parents=True)
    (out / "metrics.jsonl").write_text('{"step": 1}\n{"step": 2}\n')
    (out / "tensorboard" / "events.out.tfevents.1").write_bytes(b"events to step 2")
    directory = tmp_path / "checkpoints" / "checkpoint-2"
    directory.mkdir(parents=True)
    checkpoints.snapshot([out / "metrics.jsonl", *sorted((out / "tensorboard").rglob("*"))], out, directory)
    # The killed process went on logging after the checkpoint; the retry's output starts empty.
    fresh = tmp_path / "retry"
    checkpoints.restore_logs(directory, fresh)
    assert (fresh / "metrics.jsonl").read_text() == '{"step": 1}\n{"step": 2}\n'
    assert (fresh / "tensorboard" / "events.out.tfevents.1").read_bytes() == b"events to step 2"
