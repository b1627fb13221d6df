"""`tunerflow validate`: a conf reading a local path outside TUNERFLOW_ALLOWED_PATHS is refused when the
setting is set; unset (a user's own machine), every path is allowed."""

from __future__ import annotations

import yaml

from tasks.cli.main import main


def _conf(tmp_path, uri: str):
    path = tmp_path / "conf.yaml"
    conf = {
        "name": "exp",
        "datasets": [{"name": "a", "uri": uri}],
        "models": [{"name": "smollm2-135m-instruct"}],
        "hparams": [{"preset": "lora-fast"}],
    }
    path.write_text(yaml.safe_dump(conf))
    return str(path)


def test_validate_applies_the_allowed_paths_only_when_set(tmp_path, store_root, monkeypatch, capsys):
    conf = _conf(tmp_path, "/etc/passwd")
    monkeypatch.delenv("TUNERFLOW_ALLOWED_PATHS")
    assert main(["validate", conf]) == 0
    monkeypatch.setenv("TUNERFLOW_ALLOWED_PATHS", str(tmp_path))
    assert main(["validate", conf]) == 2
    assert "datasets.0.uri: '/etc/passwd' is outside" in capsys.readouterr().err
    assert main(["validate", _conf(tmp_path, str(tmp_path / "rows.jsonl"))]) == 0
