"""The trigger form: one Airflow Param per top-level experiment field, its JSON Schema generated from
the pydantic models, so the form, REST validation and the first task all enforce the same rules.

JSON Schema cannot say everything pydantic says (split ratios summing to 100, unique names); those
rules are re-checked by `validate_conf`, the first task, which fails before any other task runs.
"""

from __future__ import annotations

import copy
from functools import lru_cache
from pathlib import Path
from typing import Any

import yaml

from tasks.catalog import config_dir
from tasks.config import ALLOWED_METHODS, METRICS, ExperimentConfig


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


def _cross_field_schema(field: str) -> list[dict[str, Any]]:
    """The cross-field rules that JSON Schema can express, so that REST and the form refuse them too."""
    if field == "training":
        return [
            {
                "if": {"properties": {"type": {"const": kind}}},
                "then": {"properties": {"method": {"enum": list(methods)}}},
            }
            for kind, methods in ALLOWED_METHODS.items()
        ]
    if field == "scoring":
        return [
            {
                "if": {"properties": {"primary": {"const": metric}}, "required": ["primary"]},
                "then": {"properties": {"metrics": {"contains": {"const": metric}}}},
            }
            for metric in METRICS
        ]
    return []


@lru_cache(maxsize=1)
def field_schemas() -> dict[str, dict[str, Any]]:
    schema = ExperimentConfig.model_json_schema()
    defs = schema.get("$defs", {})
    out = {}
    for name, prop in schema["properties"].items():
        prop = _inline_refs(prop, defs)
        prop.pop("default", None)
        rules = _cross_field_schema(name)
        if rules:
            prop["allOf"] = rules
        out[name] = prop
    return out


def demo_conf_path() -> Path:
    return config_dir() / "experiments" / "demo.yaml"


def load_conf(path: Path) -> dict[str, Any]:
    return yaml.safe_load(path.read_text())


def param_specs(defaults: dict[str, Any] | None = None) -> dict[str, tuple[Any, dict[str, Any]]]:
    """{field: (default value, JSON Schema keywords)}, ready for `airflow.sdk.Param(default, **schema)`."""
    defaults = defaults if defaults is not None else load_conf(demo_conf_path())
    model_defaults = ExperimentConfig.model_validate(defaults).model_dump(mode="json")
    specs = {}
    for name, schema in field_schemas().items():
        specs[name] = (model_defaults[name], schema)
    return specs
