"""`tunerflow hparams list|show` driven through `tasks.cli.main.main`."""

from __future__ import annotations

import shutil

import pytest
import yaml

from tasks.cli.main import main
from tasks.config.catalog import REPO_ROOT, hparam_presets
from tasks.config.hparam_fields import HPARAM_FIELDS
from tasks.config.hparams import HPARAM_DEFAULTS, hparams_table


def run(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(["hparams", *argv])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture
def config_dir(tmp_path, monkeypatch):
    """A copy of the shipped configs plus one preset of our own, found through TUNERFLOW_CONFIG_DIR."""
    target = tmp_path / "configs"
    shutil.copytree(REPO_ROOT / "include" / "configs", target)
    (target / "hparams" / "tiny-test.yaml").write_text(
        "# A preset made up for this test:\n# two comment lines make one summary.\n"
        "learning_rate: 1.0e-3\nlr_scheduler: linear\nlora_r: 4\n"
    )
    monkeypatch.setenv("TUNERFLOW_CONFIG_DIR", str(target))
    return target


def test_list_names_every_preset_with_its_leading_comment(capsys, config_dir):
    code, out, _ = run(capsys, "list")
    assert code == 0
    rows = {line.split()[0]: line for line in out.splitlines()[2:]}
    assert set(rows) == {path.stem for path in (config_dir / "hparams").glob("*.yaml")}
    assert "A preset made up for this test: two comment lines make one summary." in rows["tiny-test"]
    for name in ("dpo-lora", "qlora-default", "pretrain-full", "lora-fast"):
        first = (config_dir / "hparams" / f"{name}.yaml").read_text().splitlines()[0].lstrip("# ")
        assert first in rows[name]


def test_show_resolves_the_preset_over_the_defaults(capsys, config_dir):
    code, out, _ = run(capsys, "show", "tiny-test")
    assert code == 0
    shown = yaml.safe_load(out)
    assert shown["name"] == "tiny-test"
    assert (shown["learning_rate"], shown["lr_scheduler"], shown["lora_r"]) == (1e-3, "linear", 4)
    untouched = set(HPARAM_DEFAULTS) - {"learning_rate", "lr_scheduler", "lora_r"}
    assert {key: shown[key] for key in untouched} == {key: HPARAM_DEFAULTS[key] for key in untouched}


@pytest.mark.parametrize("name", sorted(hparam_presets()))
def test_every_shipped_preset_resolves_and_shows_its_own_values(capsys, name):
    code, out, _ = run(capsys, "show", name)
    assert code == 0
    shown = yaml.safe_load(out)
    preset = hparam_presets()[name]
    assert {key: shown[key] for key in preset} == preset
    assert set(HPARAM_DEFAULTS) <= set(shown)


def test_show_of_an_unknown_preset_names_the_known_ones(capsys):
    code, out, err = run(capsys, "show", "nope")
    assert code == 2 and out == ""
    assert "preset 'nope' not found" in err and "lora-fast" in err


def test_table_prints_the_generated_reference_of_every_field(capsys):
    code, out, _ = run(capsys, "table")
    assert code == 0
    assert out == hparams_table() + "\n"
    assert all(f"| `{spec.name}` |" in out for spec in HPARAM_FIELDS)
