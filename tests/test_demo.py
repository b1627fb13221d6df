"""The README's first command, end to end on the real SmolLM2-135M-Instruct (slow: minutes on CPU)."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tasks.storage import store
from tests.conftest import REPO


@pytest.mark.slow
def test_demo_fine_tune_beats_the_base_model(tmp_path):
    pytest.importorskip("gguf")
    done = subprocess.run(
        [sys.executable, "-m", "tasks.cli", "demo", "--home", str(tmp_path / "home")],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=1800,
    )
    tail = done.stdout[-6000:]
    assert done.returncode == 0, tail + done.stderr[-4000:]
    assert "Winner:" in tail and "Report:" in tail and "PROMOTED" in tail
    runs = (
        store.local_path((tmp_path / "home" / "store").as_uri())
        / "experiments"
        / "tuna-identity-demo"
        / "runs"
    )
    (run_dir,) = list(runs.iterdir())
    board = store.read_json(store.to_uri(run_dir / "leaderboard.json"))
    base = next(r for r in board["rows"] if r["status"] == "reference")
    winner = board["winner"]
    print(f"base {base['metrics']} winner {winner['label']} {winner['metrics']}")
    assert winner["metrics"]["rouge_l"] > base["metrics"]["rouge_l"] + 0.2
    assert winner["metrics"]["exact_match"] > base["metrics"]["exact_match"]
