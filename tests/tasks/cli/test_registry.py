"""`tunerflow registry list|show|promote|rollback` on a file store, and once on S3 (moto server)."""

from __future__ import annotations

import json
import uuid

import pytest
import yaml

from tasks.cli.main import main
from tasks.registry import versions as registry
from tasks.storage import s3, store


@pytest.fixture
def root(tmp_path):
    return store.to_uri(tmp_path / "store")


def _register(root: str, n: int, name: str = "demo") -> None:
    for i in range(1, n + 1):
        registry.register(
            root,
            name,
            {
                "run_uri": f"{root}/experiments/demo/runs/r{i}",
                "job_id": f"j{i}",
                "label": f"alpaca|tiny|lr{i}",
                "base_model": {"name": "tiny", "hub_id": "org/tiny"},
                "dataset": {"name": "alpaca", "version": "0123456789abcdef"},
                "hparams": {"learning_rate": 1e-4 * i},
                "metrics": {"rouge_l": 0.1 * i, "eval_loss": 2.0 - 0.1 * i},
                "primary": "rouge_l",
                "exports": {"onnx": f"{root}/experiments/demo/runs/r{i}/export/onnx"},
            },
        )


def _run(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(["registry", *argv])
    out, err = capsys.readouterr()
    return code, out, err


def test_list_prints_lineage_and_marks_production(root, capsys):
    _register(root, 3)
    assert registry.set_production(root, "demo", 2, expected=None)
    code, out, _ = _run(capsys, "list", "--store", root, "--name", "demo")
    assert code == 0
    lines = out.splitlines()
    assert lines[0] == f"registry demo ({root}/registry/demo)"
    assert lines[1].split() == ["VERSION", "CREATED", "LABEL", "BASE", "MODEL", "DATASET", "METRIC", "STATUS"]
    rows = {line.split()[0]: line.split() for line in lines[3:]}
    assert sorted(rows) == ["1", "2", "3"]
    assert rows["2"][2:6] == ["alpaca|tiny|lr2", "tiny", "alpaca@0123456789abcdef", "rouge_l=0.2000"]
    assert rows["2"][-1] == "production" and rows["1"][-1] != "production"
    code, out, _ = _run(capsys, "list", "--store", root, "--json")  # the only registry: --name optional
    payload = json.loads(out)
    assert payload["production"]["version"] == 2 and len(payload["versions"]) == 3


def test_show_prints_the_entry_with_its_decision(root, capsys):
    _register(root, 2)
    registry.write_decision(root, "demo", 1, {"promoted": False, "reason": "export checks failed"})
    code, out, _ = _run(capsys, "show", "1", "--store", root)
    assert code == 0
    shown = yaml.safe_load(out)
    assert list(shown)[:3] == ["registry", "version", "created_at"]
    assert shown["version"] == 1 and shown["production"] is False
    assert shown["base_model"] == {"name": "tiny", "hub_id": "org/tiny"}
    assert shown["dataset"]["version"] == "0123456789abcdef" and shown["hparams"]["learning_rate"] == 1e-4
    assert shown["metrics"]["rouge_l"] == 0.1 and shown["exports"]["onnx"].endswith("/r1/export/onnx")
    assert shown["decision"] == {"promoted": False, "reason": "export checks failed"}
    code, out, _ = _run(capsys, "show", "2", "--store", root, "--json")
    assert json.loads(out)["decision"] is None and json.loads(out)["label"] == "alpaca|tiny|lr2"


def test_promote_moves_the_pointer_and_rollback_walks_back(root, capsys, monkeypatch):
    monkeypatch.setenv("LOGNAME", "ada")  # getpass.getuser() reads it first
    _register(root, 3)
    code, out, _ = _run(capsys, "promote", "1", "--store", root)
    assert code == 0 and "production is now version 1 (was nothing)" in out
    code, out, _ = _run(capsys, "promote", "3", "--store", root, "--reason", "hotfix")
    assert code == 0 and "production is now version 3 (was version 1)" in out
    assert registry.production(root, "demo")["reason"] == "hotfix"
    code, out, _ = _run(capsys, "promote", "3", "--store", root)
    assert code == 0 and "already production" in out
    assert len(registry.history(root, "demo")) == 2  # a no-op promotion writes nothing
    code, out, _ = _run(capsys, "rollback", "--store", root)
    assert code == 0 and "rolled production back to version 1 (was version 3)" in out
    assert registry.production(root, "demo")["version"] == 1
    code, _, err = _run(capsys, "rollback", "--store", root)
    assert code == 2 and "no earlier production version to roll back to from version 1" in err
    assert [r["version"] for r in registry.history(root, "demo")] == [1, 3, 1]
    assert [r["actor"] for r in registry.history(root, "demo")] == ["ada", "ada", "ada"]


def test_promote_refuses_when_the_pointer_moved_meanwhile(root, capsys, monkeypatch):
    _register(root, 3)
    assert registry.set_production(root, "demo", 1, expected=None)
    real = registry.set_production

    def someone_else_first(root_, name, version, expected, reason=None, actor=None):
        assert real(root_, name, 2, expected, reason="the other promotion")
        return real(root_, name, version, expected, reason=reason, actor=actor)

    monkeypatch.setattr(registry, "set_production", someone_else_first)
    code, _, err = _run(capsys, "promote", "3", "--store", root)
    assert code == 2
    assert "someone else moved production" in err and "now version 2, sequence 2" in err
    assert registry.production(root, "demo")["version"] == 2


def test_base_models_lists_each_base_with_its_versions(root, capsys):
    _register(root, 2)
    registry.register(root, "demo", {"base_model": {"name": "qwen", "hub_id": "Qwen/q"}, "metrics": {}})
    assert registry.set_production(root, "demo", 3, expected=None)
    code, out, _ = _run(capsys, "base-models", "--store", root)
    assert code == 0
    rows = [line.split() for line in out.splitlines()[2:]]
    assert rows == [["tiny", "org/tiny", "-", "1,2"], ["qwen", "Qwen/q", "-", "3", "production:", "v3"]]
    code, out, _ = _run(capsys, "base-models", "--store", root, "--json")
    assert [r["versions"] for r in json.loads(out)] == [[1, 2], [3]]


def test_errors_are_readable_with_a_nonzero_exit(root, capsys):
    code, _, err = _run(capsys, "list", "--store", root)
    assert code == 2 and f"no model registry under {root}" in err
    code, _, err = _run(capsys, "rollback", "--store", root, "--name", "demo")
    assert code == 2 and "registry 'demo' has no versions" in err and "this store has no registry yet" in err
    _register(root, 2)
    code, _, err = _run(capsys, "show", "7", "--store", root)
    assert code == 2 and "registry 'demo' has no version 7 (it has versions 1 to 2" in err
    code, _, err = _run(capsys, "promote", "9", "--store", root)
    assert code == 2 and "has no version 9" in err and registry.pointer(root, "demo") is None
    code, _, err = _run(capsys, "rollback", "--store", root)
    assert code == 2 and "no production version yet" in err
    _register(root, 1, name="other")
    code, _, err = _run(capsys, "list", "--store", root)
    assert code == 2 and "2 registries" in err and "demo, other" in err and "--name" in err


def test_the_commands_work_on_an_s3_store(aws_env, capsys):
    bucket = f"cli-{uuid.uuid4().hex[:12]}"
    s3.client().create_bucket(Bucket=bucket)
    root = f"s3://{bucket}/tunerflow"
    _register(root, 2)
    assert _run(capsys, "promote", "1", "--store", root)[0] == 0
    assert _run(capsys, "promote", "2", "--store", root)[0] == 0
    code, out, _ = _run(capsys, "list", "--store", root)
    assert (
        code == 0 and out.splitlines()[-1].split()[0] == "2" and out.splitlines()[-1].endswith("production")
    )
    code, out, _ = _run(capsys, "rollback", "--store", root)
    assert code == 0 and "back to version 1" in out
    assert yaml.safe_load(_run(capsys, "show", "1", "--store", root)[1])["production"] is True
    code, _, err = _run(capsys, "list", "--store", f"s3://no-such-{uuid.uuid4().hex[:8]}/x")
    assert code == 2 and "no model registry under" in err
