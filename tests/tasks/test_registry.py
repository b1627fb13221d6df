"""The file registry: exclusive version allocation, CAS on the production pointer, rollback."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import pytest

from tasks import registry, store


@pytest.fixture
def root(tmp_path):
    return store.to_uri(tmp_path / "store")


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
    path = store.local_path(registry.registry_uri(root, "m")) / "versions" / "2" / "entry.json"
    assert path.is_file()


def test_concurrent_registration_gets_distinct_versions(root):
    barrier = threading.Barrier(8)

    def go(i: int) -> int:
        barrier.wait()
        return registry.register(root, "m", _entry(i))["version"]

    with ThreadPoolExecutor(8) as pool:
        versions = list(pool.map(go, range(8)))
    assert sorted(versions) == list(range(1, 9))
    assert len(registry.list_versions(root, "m")) == 8


def test_list_skips_a_version_whose_entry_is_not_written(root):
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


def test_concurrent_cas_with_same_expected_has_exactly_one_winner(root):
    for i in range(1, 10):
        registry.register(root, "m", _entry(i))
    assert registry.set_production(root, "m", 1, expected=None)
    barrier = threading.Barrier(8)

    def go(version: int) -> bool:
        barrier.wait()
        return registry.set_production(root, "m", version, expected=1)

    with ThreadPoolExecutor(8) as pool:
        outcomes = list(pool.map(go, range(2, 10)))
    assert outcomes.count(True) == 1
    winner = range(2, 10)[outcomes.index(True)]
    current = registry.production(root, "m")
    assert current["version"] == winner and current["sequence"] == 2
    assert len(registry.history(root, "m")) == 2


def test_concurrent_first_pointer_has_exactly_one_winner(root):
    for i in range(1, 9):
        registry.register(root, "m", _entry(i))
    barrier = threading.Barrier(8)

    def go(version: int) -> bool:
        barrier.wait()
        return registry.set_production(root, "m", version, expected=None)

    with ThreadPoolExecutor(8) as pool:
        assert list(pool.map(go, range(1, 9))).count(True) == 1


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


def test_non_file_roots_are_refused(root):
    with pytest.raises(NotImplementedError):
        registry.list_versions("s3://bucket/prefix", "m")
