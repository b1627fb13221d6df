"""Hostile trigger confs (issue 16): confs generated from the trigger form's JSON Schema or taken from the
example confs, then mutated (tests/fixtures/hostile_confs.py), through every layer a conf passes:

- the Params' JSON Schema, as Airflow's form and REST API validate each Param (`jsonschema`);
- `parse_experiment` (the form's choices expanded, then `ExperimentConfig`);
- `validate_conf` on a fresh local store (tests/tasks/pipeline/test_hostile_validate_conf.py).

Each conf is accepted or refused with `ConfError` whose every line names a field; never another
exception. The example counts are explicit and the runs derandomized, so CI runs the same confs each time.
"""

from __future__ import annotations

import jsonschema
from hypothesis import HealthCheck, Phase, event, given, settings

from tasks.config.base import ConfError, path_part
from tasks.config.experiment import parse_experiment
from tasks.config.params import LAYOUT
from tests.fixtures.hostile_confs import example_confs, mutated, schema_confs, schemas

SETTINGS = {
    "derandomize": True,
    "deadline": None,
    "database": None,
    # No shrinking: a failure is reported with the conf as generated (derandomized, so reproducible)
    # instead of minutes spent minimising it.
    "phases": [Phase.explicit, Phase.generate],
    # Generating from the form's schemas is slow by design; the counts are what matters here.
    "suppress_health_check": [HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much],
}
VALIDATORS = {
    name: jsonschema.validators.validator_for(schema)(schema, format_checker=jsonschema.FormatChecker())
    for name, schema in schemas().items()
}


def check_schema_layer(conf: dict) -> None:
    """Each Param's value validates or fails with jsonschema's own error, as the form and REST report it."""
    for name, value in conf.items():
        if name in VALIDATORS:
            errors = list(VALIDATORS[name].iter_errors(value))
            assert all(isinstance(error, jsonschema.ValidationError) for error in errors)
            if errors:
                event("JSON Schema: a Param refused")


def refusal_lines(error: ConfError) -> list[str]:
    message = str(error)
    assert message.startswith("invalid experiment conf:\n"), message[:200]
    return message.split("\n")[1:]


def names_a_field(line: str, conf: dict) -> bool:
    """Whether a refusal line starts with a field path (`datasets.0.split: ...`): a Param, a key the conf
    gave (an unknown one is refused by its name), or `conf` for a rule over the whole conf."""
    fields = {*LAYOUT, "conf", *(path_part(key) for key in conf if isinstance(key, str))}
    return any(line.startswith((f"{field}:", f"{field}.")) for field in fields)


def check_parse_layer(conf: dict) -> None:
    try:
        parse_experiment(conf)
        event("parse_experiment: accepted")  # counted by --hypothesis-show-statistics
    except ConfError as error:
        event("parse_experiment: refused")
        for line in refusal_lines(error):
            assert names_a_field(line, conf), f"a refusal line names no field: {line[:200]!r}"


@settings(max_examples=1500, **SETTINGS)
@given(mutated(example_confs()))
def test_mutated_example_confs_are_accepted_or_refused_naming_a_field(conf):
    check_schema_layer(conf)
    check_parse_layer(conf)


@settings(max_examples=500, **SETTINGS)
@given(mutated(schema_confs()))
def test_confs_generated_from_the_form_schema_are_accepted_or_refused_naming_a_field(conf):
    check_schema_layer(conf)
    check_parse_layer(conf)
