"""A promotion racing a rollback on the same registry (file:// and S3 on moto's server): both decided at
the same pointer sequence, released together from two threads, many times over so that every
interleaving of their reads and conditional writes comes up. Exactly one moves production; the history
keeps the winner's move and the loser's refusal with its reason."""

from __future__ import annotations

import threading
import uuid
from concurrent.futures import ThreadPoolExecutor

import pytest

from tasks.registry import production
from tasks.registry import versions as registry
from tasks.storage import s3, store

ITERATIONS = 50


@pytest.fixture(params=["file", "s3"])
def root(request, tmp_path):
    if request.param == "file":
        return store.to_uri(tmp_path / "store")
    request.getfixturevalue("aws_env")
    bucket = f"race-{uuid.uuid4().hex[:12]}"
    s3.client().create_bucket(Bucket=bucket)
    return f"s3://{bucket}/registry-root"


def _registry(root: str, name: str) -> None:
    """Versions 1..3, production moved 1 -> 2 (sequence 2), so a rollback goes to 1 and a promotion to 3."""
    for i in range(1, 4):
        registry.register(root, name, {"job_id": f"job-{i}", "metrics": {"rouge_l": 0.1 * i}})
    assert registry.set_production(root, name, 1, expected=None)
    assert registry.set_production(root, name, 2, expected=1)


def _race(root: str, name: str) -> tuple[bool, bool]:
    """(promotion won, rollback won), both decided at sequence 2 and released by one barrier."""
    barrier = threading.Barrier(2)

    def promote() -> bool:
        barrier.wait()
        return registry.set_production(root, name, 3, expected=2, reason="beats v2", actor="pipeline")

    def roll_back() -> bool:
        barrier.wait()
        try:
            return registry.rollback(root, name, actor="oncall", expected=2) == 1
        except production.PointerMoved:
            return False

    with ThreadPoolExecutor(2) as pool:
        promoted, rolled_back = pool.submit(promote), pool.submit(roll_back)
        return promoted.result(), rolled_back.result()


def test_a_promotion_racing_a_rollback_has_one_winner_and_both_are_in_the_history(root):
    wins = {"promote": 0, "rollback": 0}
    for i in range(ITERATIONS):
        name = f"m{i}"
        _registry(root, name)
        promoted, rolled_back = _race(root, name)
        assert promoted != rolled_back, f"iteration {i}: exactly one must win ({promoted=}, {rolled_back=})"
        winner, loser = ("promote", "rollback") if promoted else ("rollback", "promote")
        wins[winner] += 1

        current = registry.pointer(root, name)
        assert (current["sequence"], current["action"]) == (3, winner)
        assert current["version"] == (3 if promoted else 1)
        # The pointer's own history is unchanged in shape: one record per move.
        assert [r["sequence"] for r in registry.history(root, name)] == [1, 2, 3]

        full = registry.history(root, name, refused=True)
        assert [r["action"] for r in full] == ["promote", "promote", winner, "refused"], f"iteration {i}"
        refusal = full[-1]
        assert refusal["attempted"] == loser and refusal["expected"] == 2
        assert (refusal["found_sequence"], refusal["found_version"]) == (3, current["version"])
        assert "refused" in refusal["reason"] and "sequence 2" in refusal["reason"]
        assert refusal["actor"] == ("oncall" if loser == "rollback" else "pipeline")
        assert registry.refused(root, name) == [refusal]
    print(f"\n{root.split(':')[0]}: {ITERATIONS} races, wins {wins}")
