"""How a refused conf reads: one line per problem, each starting with the field path."""

from __future__ import annotations

import pytest

from tasks.config.base import ConfError
from tasks.config.experiment import parse_experiment

CONF = {
    "name": "exp",
    "datasets": [{"name": "a", "uri": "builtin:tuna_identity"}],
    "models": [{"name": "m1"}],
    "hparams": [{"preset": "lora-fast"}],
}


def _lines(conf: dict) -> list[str]:
    with pytest.raises(ConfError) as error:
        parse_experiment(conf)
    return str(error.value).split("\n")[1:]


def test_a_made_up_key_with_a_line_break_stays_on_its_fields_line():
    """Found by tests/tasks/config/test_hostile_confs.py: a key "\\n" split the line in two."""
    lines = _lines({**CONF, "models": [{"name": "m1", "\n": None}]})
    assert lines == ['models.0."\\n": Extra inputs are not permitted']


def test_a_long_or_odd_key_is_quoted_and_cut():
    (line,) = _lines({**CONF, "a" * 5000: 1})
    assert line == f'"{"a" * 40}...": Extra inputs are not permitted'
    (line,) = _lines({**CONF, "": 1})
    assert line == '"": Extra inputs are not permitted'


def test_a_given_value_with_a_line_break_does_not_start_a_line():
    lines = _lines({**CONF, "datasets": [{"name": "a", "uri": "x.jsonl", "format": "evil\nname"}]})
    assert len(lines) == 1 and lines[0].startswith("datasets.0.format: unknown format 'evil name'")
