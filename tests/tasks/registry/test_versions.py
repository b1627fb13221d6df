"""The registry on file:// and on S3 (moto server): exclusive version allocation, CAS on the production
pointer, rollback. Every behavioural test runs on both backends."""

from __future__ import annotations

import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor

import pytest

from tasks.registry import production
from tasks.registry import versions as registry
from tasks.storage import s3, store
from tasks.storage.s3_backend import S3Backend

RACERS = 8


def _bucket() -> str:
    bucket = f"registry-{uuid.uuid4().hex[:12]}"
    s3.client().create_bucket(Bucket=bucket)
    return bucket


@pytest.fixture(params=["file", "s3"])
def root(request, tmp_path):
    if request.param == "file":
        return store.to_uri(tmp_path / "store")
    request.getfixturevalue("aws_env")
    return f"s3://{_bucket()}/registry-root"


def _objects(root: str, name: str) -> list[str]:
    """Every key under the registry's prefix (S3 only), relative to it."""
    bucket, key = s3.split(registry.registry_uri(root, name))
    listed = s3.client().list_objects_v2(Bucket=bucket, Prefix=key + "/").get("Contents", [])
    return sorted(item["Key"][len(key) + 1 :] for item in listed)


def _entry(i: int = 0) -> dict:
    return {
        "run_uri": f"file:///runs/{i}",
        "job_id": f"job-{i}",
        "label": f"ds|model|lr{i}",
        "base_model": {"name": "tiny", "hub_id": "org/tiny"},
        "dataset": {"name": "demo", "version": "v1"},
        "metrics": {"rouge_l": 0.1 * i},
    }


def test_register_assigns_versions_and_keeps_lineage(root):
    first = registry.register(root, "m", _entry(1))
    second = registry.register(root, "m", _entry(2))
    assert (first["version"], second["version"]) == (1, 2)
    stored = registry.get_version(root, "m", 2)
    assert stored["label"] == "ds|model|lr2"
    assert stored["base_model"]["hub_id"] == "org/tiny"
    assert stored["exports"] == {} and stored["model_uri"] is None and stored["created_at"]
    assert [e["version"] for e in registry.list_versions(root, "m")] == [1, 2]
    assert registry.get_version(root, "m", 9) is None
    assert registry.find_versions(root, "m", run_uri="file:///runs/1", job_id="job-1")[0]["version"] == 1
    if root.startswith("s3://"):
        assert _objects(root, "m") == ["versions/1/entry.json", "versions/2/entry.json"]
    else:
        path = store.local_path(registry.registry_uri(root, "m")) / "versions" / "2" / "entry.json"
        assert path.is_file()


def test_base_models_are_listed_with_the_versions_fine_tuned_from_them(root):
    assert registry.base_models(root, "m") == []
    registry.register(root, "m", _entry(1))
    registry.register(
        root, "m", {**_entry(2), "base_model": {"name": "qwen", "hub_id": "Qwen/q", "family": "qwen2"}}
    )
    registry.register(root, "m", _entry(3))
    assert registry.set_production(root, "m", 2, expected=None)
    assert registry.base_models(root, "m") == [
        {"name": "tiny", "hub_id": "org/tiny", "family": None, "versions": [1, 3], "production": None},
        {"name": "qwen", "hub_id": "Qwen/q", "family": "qwen2", "versions": [2], "production": 2},
    ]


def test_decisions_are_stored_beside_their_version(root):
    registry.register(root, "m", _entry(1))
    assert registry.read_decision(root, "m", 1) is None
    registry.write_decision(root, "m", 1, {"promoted": False, "reason": "checks failed"})
    assert registry.read_decision(root, "m", 1) == {"promoted": False, "reason": "checks failed"}
    registry.write_decision(root, "m", 1, {"promoted": True, "reason": "re-decided"})
    assert registry.read_decision(root, "m", 1)["promoted"] is True
    assert [e["version"] for e in registry.list_versions(root, "m")] == [1]


def test_concurrent_registration_gets_distinct_versions(root):
    registry.register(root, "m", _entry(100))  # every racer starts from the same "next is 2"
    barrier = threading.Barrier(RACERS)

    def go(i: int) -> int:
        barrier.wait()
        return registry.register(root, "m", _entry(i))["version"]

    with ThreadPoolExecutor(RACERS) as pool:
        versions = list(pool.map(go, range(RACERS)))
    assert sorted(versions) == list(range(2, RACERS + 2))
    entries = registry.list_versions(root, "m")
    # Nobody's entry was overwritten: each version still holds the racer that was handed that number.
    assert {e["version"]: e["job_id"] for e in entries[1:]} == {v: f"job-{i}" for i, v in enumerate(versions)}
    assert entries[0]["job_id"] == "job-100"


def test_list_skips_a_version_whose_entry_is_not_written(tmp_path):
    root = store.to_uri(tmp_path / "store")  # file:// only: on S3 the entry itself is the claim
    registry.register(root, "m", _entry(1))
    (store.local_path(registry.registry_uri(root, "m")) / "versions" / "2").mkdir()
    assert [e["version"] for e in registry.list_versions(root, "m")] == [1]
    assert registry.register(root, "m", _entry(3))["version"] == 3


def test_set_production_is_compare_and_swap(root):
    for i in range(1, 4):
        registry.register(root, "m", _entry(i))
    assert registry.production(root, "m") is None
    assert registry.set_production(root, "m", 1, expected=None)
    assert not registry.set_production(root, "m", 2, expected=None)  # a pointer exists now
    current = registry.production(root, "m")
    assert current["version"] == 1 and current["sequence"] == 1 and current["etag"] == "1"
    assert current["entry"]["job_id"] == "job-1" and current["previous"] is None
    assert not registry.set_production(root, "m", 2, expected=7)
    assert registry.set_production(root, "m", 2, expected=1)
    current = registry.production(root, "m")
    assert (current["version"], current["sequence"], current["previous"]) == (2, 2, 1)
    assert [r["version"] for r in registry.history(root, "m")] == [1, 2]
    with pytest.raises(registry.RegistryError):
        registry.set_production(root, "m", 42, expected=2)


def _race(root: str, versions: range, expected: int | None) -> list[bool]:
    """Promote each of `versions` from its own thread (all sharing one S3 client), all released at once."""
    barrier = threading.Barrier(len(versions))

    def go(version: int) -> bool:
        barrier.wait()
        return registry.set_production(root, "m", version, expected=expected)

    with ThreadPoolExecutor(len(versions)) as pool:
        return list(pool.map(go, versions))


def test_concurrent_cas_with_same_expected_has_exactly_one_winner(root):
    for i in range(1, RACERS + 2):
        registry.register(root, "m", _entry(i))
    assert registry.set_production(root, "m", 1, expected=None)
    contenders = range(2, RACERS + 2)
    outcomes = _race(root, contenders, expected=1)
    assert outcomes.count(True) == 1
    winner = contenders[outcomes.index(True)]
    current = registry.production(root, "m")
    assert current["version"] == winner and current["sequence"] == 2 and current["previous"] == 1
    assert [(r["sequence"], r["version"]) for r in registry.history(root, "m")] == [(1, 1), (2, winner)]
    # The losers were told, and a loser that re-reads can move the pointer on from the winner.
    loser = next(v for v, won in zip(contenders, outcomes, strict=True) if not won)
    assert registry.set_production(root, "m", loser, expected=2)


def test_concurrent_first_pointer_has_exactly_one_winner(root):
    for i in range(1, RACERS + 1):
        registry.register(root, "m", _entry(i))
    contenders = range(1, RACERS + 1)
    outcomes = _race(root, contenders, expected=None)
    assert outcomes.count(True) == 1
    assert registry.production(root, "m")["version"] == contenders[outcomes.index(True)]
    assert len(registry.history(root, "m")) == 1


def test_s3_cas_is_decided_by_the_conditional_write_not_by_timing(aws_env, monkeypatch):
    """Every racer reads the same pointer before anyone writes (moto's store is slowed down), so only
    S3's If-Match check can tell them apart; it must still leave exactly one winner. This also guards
    the `s3_endpoint` fixture: moto's threaded server as it comes lets all of them through."""
    from moto.s3.models import S3Backend

    root = f"s3://{_bucket()}/slow"
    for i in range(1, RACERS + 2):
        registry.register(root, "m", _entry(i))
    assert registry.set_production(root, "m", 1, expected=None)
    original = S3Backend.put_object

    def slow_put(self, *args, **kwargs):
        time.sleep(0.05)  # widen the gap between moto's precondition check and its write
        return original(self, *args, **kwargs)

    monkeypatch.setattr(S3Backend, "put_object", slow_put)
    outcomes = _race(root, range(2, RACERS + 2), expected=1)
    assert outcomes.count(True) == 1
    assert registry.production(root, "m")["sequence"] == 2
    assert len(registry.history(root, "m")) == 2


def test_s3_history_keeps_a_record_whose_writer_died_after_the_pointer_write(aws_env, monkeypatch):
    root = f"s3://{_bucket()}/crash"
    for i in range(1, 4):
        registry.register(root, "m", _entry(i))
    assert registry.set_production(root, "m", 1, expected=None)
    create = S3Backend.create_if_absent

    def die_on_history(self, uri, data):
        if uri.endswith("/history/000000000002.json"):
            raise ConnectionError("worker killed")
        return create(self, uri, data)

    monkeypatch.setattr(S3Backend, "create_if_absent", die_on_history)
    with pytest.raises(ConnectionError):
        registry.set_production(root, "m", 2, expected=1)
    monkeypatch.setattr(S3Backend, "create_if_absent", create)
    # The pointer moved; its record is shown in the history although its own object was never written...
    assert [r["version"] for r in registry.history(root, "m")] == [1, 2]
    assert "history/000000000002.json" not in _objects(root, "m")
    # ...and the next move writes it before replacing the pointer, so no record is ever lost.
    assert registry.set_production(root, "m", 3, expected=2)
    assert [r["version"] for r in registry.history(root, "m")] == [1, 2, 3]
    assert [k for k in _objects(root, "m") if k.startswith("history/")] == [
        "history/000000000001.json",
        "history/000000000002.json",
        "history/000000000003.json",
    ]


def test_rollback_walks_back_through_production_versions(root):
    for i in range(1, 4):
        registry.register(root, "m", _entry(i))
    with pytest.raises(registry.RegistryError):
        registry.rollback(root, "m")
    assert registry.set_production(root, "m", 1, expected=None)
    assert registry.set_production(root, "m", 2, expected=1)
    assert registry.set_production(root, "m", 3, expected=2)
    assert registry.rollback(root, "m") == 2
    current = registry.production(root, "m")
    assert (current["version"], current["previous"], current["action"]) == (2, 1, "rollback")
    assert registry.rollback(root, "m") == 1
    assert registry.production(root, "m")["previous"] is None
    with pytest.raises(registry.RegistryError):
        registry.rollback(root, "m")
    assert [r["version"] for r in registry.history(root, "m")] == [1, 2, 3, 2, 1]


def test_who_moved_production_is_recorded_in_its_history(root):
    for i in range(1, 3):
        registry.register(root, "m", _entry(i))
    assert registry.set_production(root, "m", 1, expected=None)
    assert registry.set_production(root, "m", 2, expected=1, actor="ada")
    assert registry.rollback(root, "m", actor="grace") == 1
    assert [(r["version"], r["actor"]) for r in registry.history(root, "m")] == [
        (1, None),
        (2, "ada"),
        (1, "grace"),
    ]


def test_a_rollback_for_a_pointer_that_moved_writes_nothing(root, monkeypatch):
    for i in range(1, 4):
        registry.register(root, "m", _entry(i))
    assert registry.set_production(root, "m", 1, expected=None)
    assert registry.set_production(root, "m", 2, expected=1)
    with pytest.raises(production.PointerMoved, match="sequence 2, not 1"):
        registry.rollback(root, "m", expected=1)
    assert len(registry.history(root, "m")) == 2
    # A promotion lands between the rollback's read and its write: the retry sees it and refuses.
    real = production._swap
    raced = []

    def racing(records, expected, make):
        if not raced:
            monkeypatch.setattr(production, "_swap", real)
            raced.append(registry.set_production(root, "m", 3, expected=2, actor="bob"))
        return real(records, expected, make)

    monkeypatch.setattr(production, "_swap", racing)
    with pytest.raises(production.PointerMoved, match="version 3"):
        registry.rollback(root, "m", actor="ada", expected=2)
    assert raced == [True] and registry.pointer(root, "m")["version"] == 3
    assert [(r["version"], r["actor"]) for r in registry.history(root, "m")] == [
        (1, None),
        (2, None),
        (3, "bob"),
    ]
    assert registry.rollback(root, "m", actor="ada", expected=3) == 2


def test_unknown_schemes_are_refused_and_a_missing_bucket_is_named(aws_env):
    with pytest.raises(NotImplementedError, match="'gs://'"):
        registry.list_versions("gs://bucket/prefix", "m")
    missing = f"s3://no-such-{uuid.uuid4().hex[:8]}/prefix"
    assert registry.list_versions(missing, "m") == []
    with pytest.raises(registry.RegistryError, match=r"bucket 'no-such-\w+' does not exist"):
        registry.register(missing, "m", _entry(1))
