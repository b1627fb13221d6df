"""The trigger form's choices: shorter ways to write fields of an experiment conf, expanded before it is
validated, so that a person can start an experiment without typing JSON.

A choice is never a setting of its own; `expand` turns each into the conf it stands for:

- `template` ("Start from"): an example conf under include/configs/experiments/ (`demo`). Every field
  left empty is taken from it, except `name`: every task finds its run by the `name` Param.
- a string in `datasets`: `builtin:<name>` (a file under include/data/) or `registered:<name>` (a
  dataset registered with `tunerflow dataset create`), the dataset named after it;
- a string in `models`: a catalog name; a string in `hparams`: a preset name;
- null: the field was left empty and counts as omitted (the form sends every field, empty ones as null).

Stdlib and yaml only: `parse_experiment` expands every conf it is given, from a trigger, the CLI or a test.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from tasks.config.base import ConfError
from tasks.config.paths import config_dir, data_dir

TEMPLATE = "template"
BUILTIN = "builtin:"
REGISTERED = "registered:"


def load_conf(path: Path) -> dict[str, Any]:
    return yaml.safe_load(path.read_text())


def leading_comment(path: Path) -> str:
    """A YAML file's leading comment, joined into one line: what a preset or an example conf is for."""
    lines = []
    for line in path.read_text().splitlines():
        if not line.startswith("#"):
            break
        lines.append(line.lstrip("#").strip())
    return " ".join(lines)


def templates() -> dict[str, Path]:
    """{name: path} of the example confs a run may start from."""
    return {path.stem: path for path in sorted((config_dir() / "experiments").glob("*.yaml"))}


def builtin_datasets() -> list[str]:
    """The `builtin:` dataset names, the files shipped under include/data/."""
    return sorted(path.stem for path in data_dir().glob("*.jsonl"))


def _dataset(choice: str) -> dict[str, Any] | str:
    if choice.startswith(BUILTIN):
        return {"name": choice.removeprefix(BUILTIN), "uri": choice}
    if choice.startswith(REGISTERED):
        name = choice.removeprefix(REGISTERED)
        return {"name": name, "registered": name}
    # Left as given: the conf model says what a dataset needs.
    return choice


EXPANDERS = {
    "datasets": _dataset,
    "models": lambda choice: {"name": choice},
    "hparams": lambda choice: {"preset": choice},
}


def _template(name: Any) -> dict[str, Any]:
    known = templates()
    # A REST conf may send any JSON here: only a string can name an example conf.
    if not isinstance(name, str) or name not in known:
        given = f"{name!r:.80}"
        raise ConfError(f"invalid experiment conf:\ntemplate: unknown {given}; known: {', '.join(known)}")
    conf = load_conf(known[name])
    conf.pop("name", None)
    return conf


def expand(conf: dict[str, Any]) -> dict[str, Any]:
    """The conf with every choice written out: what `ExperimentConfig` validates."""
    given = {key: value for key, value in conf.items() if value is not None}
    template = given.pop(TEMPLATE, None)
    if template is not None:
        given = {**_template(template), **given}
    for field, expand_choice in EXPANDERS.items():
        if isinstance(given.get(field), list):
            given[field] = [expand_choice(item) if isinstance(item, str) else item for item in given[field]]
    return given
