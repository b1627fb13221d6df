"""The trigger form: one Airflow Param per top-level experiment field, its JSON Schema generated from
the pydantic models, so the form, REST validation and the first task all enforce the same rules.

JSON Schema cannot say everything pydantic says (split ratios summing to 100, unique names); those
rules are re-checked by `validate_conf`, the first task, which fails before any other task runs.
"""

from __future__ import annotations

import copy
import json
from functools import lru_cache
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel

from tasks.config.catalog import config_dir
from tasks.config.experiment import ExperimentConfig
from tasks.config.scoring import ScoringConfig
from tasks.config.training import ALLOWED_METHODS, TrainingConfig
from tasks.scoring.plugins import metric_names


def _inline_refs(node: Any, defs: dict[str, Any]) -> Any:
    if isinstance(node, dict):
        if "$ref" in node:
            target = defs[node["$ref"].split("/")[-1]]
            merged = {
                **_inline_refs(copy.deepcopy(target), defs),
                **{k: v for k, v in node.items() if k != "$ref"},
            }
            return merged
        return {key: _inline_refs(value, defs) for key, value in node.items()}
    if isinstance(node, list):
        return [_inline_refs(item, defs) for item in node]
    return node


def _when(field: str, value: str, default: str) -> dict[str, Any]:
    """JSON Schema condition "field equals value", also true when the field is omitted and value is
    the pydantic default (an omitted field takes its default)."""
    equals = {"properties": {field: {"const": value}}, "required": [field]}
    return {"anyOf": [equals, {"not": {"required": [field]}}]} if value == default else equals


def _cross_field_schema(field: str, metrics: tuple[str, ...]) -> list[dict[str, Any]]:
    """The cross-field rules that JSON Schema can express, so that REST and the form refuse them too."""
    if field == "training":
        default = TrainingConfig.model_fields["type"].default
        return [
            {"if": _when("type", kind, default), "then": {"properties": {"method": {"enum": list(methods)}}}}
            for kind, methods in ALLOWED_METHODS.items()
        ]
    if field == "scoring":
        default = ScoringConfig.model_fields["primary"].default
        return [
            {
                "if": _when("primary", metric, default),
                "then": {"properties": {"metrics": {"contains": {"const": metric}}}},
            }
            for metric in metrics
        ]
    return []


def _metric_examples(prop: dict[str, Any], metrics: tuple[str, ...]) -> None:
    """List the metric names as examples, not as an enum: a name the schema does not know (a plugin
    added after the DAG was parsed) is left to validate_conf, which names the metrics it knows."""
    props = prop["properties"]
    props["metrics"]["items"]["examples"] = list(metrics)
    props["primary"]["examples"] = list(metrics)


def field_schemas() -> dict[str, dict[str, Any]]:
    """{field: JSON Schema} of every top-level experiment field, with the metrics known now."""
    return _field_schemas(metric_names())


@lru_cache(maxsize=4)
def _field_schemas(metrics: tuple[str, ...]) -> dict[str, dict[str, Any]]:
    schema = ExperimentConfig.model_json_schema()
    defs = schema.get("$defs", {})
    out = {}
    for name, prop in schema["properties"].items():
        prop = _inline_refs(prop, defs)
        prop.pop("default", None)
        if name == "scoring":
            _metric_examples(prop, metrics)
        rules = _cross_field_schema(name, metrics)
        if rules:
            prop["allOf"] = rules
        out[name] = prop
    return out


def demo_conf_path() -> Path:
    return config_dir() / "experiments" / "demo.yaml"


def load_conf(path: Path) -> dict[str, Any]:
    return yaml.safe_load(path.read_text())


NO_DEFAULT = object()


class SharedSchema(dict):
    """A Param's JSON Schema that the copies of the Param share.

    Airflow deep-copies a DAG's Params into every task it creates (`finetune_experiment`: 48 copies of
    schemas that hold the definitions of every conf model), which took most of a parse. A schema is not
    changed once the DAG is built, so a deep copy may be the schema itself; the value a Param holds is
    still copied."""

    def __deepcopy__(self, memo: dict[int, Any]) -> SharedSchema:
        return self


def param_specs() -> dict[str, tuple[Any, dict[str, Any]]]:
    """{field: (default, JSON Schema keywords)} for `airflow.sdk.Param(default, **schema)`.

    Optional fields default to their pydantic defaults; required fields (name, datasets, models,
    hparams) have none, so a REST conf that omits one is refused instead of silently running the demo.
    The demo conf is shown as the example in each required field's description.
    """
    demo = load_conf(demo_conf_path())
    specs = {}
    for name, schema in field_schemas().items():
        field = ExperimentConfig.model_fields[name]
        if field.is_required():
            example = json.dumps(demo[name], separators=(", ", ": "))
            schema = {**schema, "description": f"{schema.get('description', '')} Example: {example}"}
            specs[name] = (NO_DEFAULT, schema)
        else:
            specs[name] = (field.get_default(call_default_factory=True), schema)
            if isinstance(specs[name][0], BaseModel):
                specs[name] = (specs[name][0].model_dump(mode="json"), schema)
    return specs
